"""Input readers for the converter: every supported source as a stream of records.

A source is read in two stages so that the slow part can run in worker processes:
:func:`iter_raw` yields cheap :class:`RawRecord` s (text or an already-read ``Atoms``) in a fixed
order, and :func:`parse` turns one into a :class:`Record` ``(record_id, structure_or_error,
properties, source)``. :func:`iter_records` does both. A record that cannot be read never stops the
stream: it comes out with a :class:`RecordError` (reason + message) in place of the structure.

Sources (:func:`input_format`): a CSV (``.csv`` / ``.csv.gz``) with a ``cif`` column (MP-20/CDVAE;
ids from ``material_id`` when present, else ``<file>:<row>``); a single ``.cif`` or AIRSS ``.res``
file; a directory (its ``*.cif`` and ``*.res`` files, sorted); a ``.tar`` / ``.tar.gz`` / ``.tgz`` of
CIF / res files (a ``metadata.csv`` inside, with ``material_id``, supplies ids and properties; the
member ``mp_mp-123.cif`` matches id ``mp-123``); an ASE database (``.db``); extended XYZ (split
into frames here, so a bad frame is skipped alone); and any other multi-frame file ``ase.io``
reads (traj, ...), where a frame that fails to read ends that file with one error record.
Globs are expanded by :func:`expand_inputs`.

Bad bytes never lose more than their record: a CSV row or XYZ frame that is not valid UTF-8 is one
error record with reason ``bad_encoding``. A file that cannot be read to its end (a truncated
``.gz``, a garbage ``.db`` or ``.tar.gz``, an XYZ atom-count line that is not a number) ends with
one error record with reason ``unreadable``, whose message names the file and how many records of
it were read before it stopped; the records before it are kept.

This module is the stream (:func:`expand_inputs`, :func:`iter_raw`, :func:`iter_records`,
:func:`read_structures`); the record types live in :mod:`~ase_unimat.data.records`, the formats in
:mod:`~ase_unimat.data.input_formats` and parsing in :mod:`~ase_unimat.data.parsing` (their public
names are re-exported here).
"""

from __future__ import annotations

import glob
import itertools
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from ase import Atoms

from ase_unimat.core.messages import one_line
from ase_unimat.data.input_formats import STRUCTURE_SUFFIXES, input_format, iter_source
from ase_unimat.data.parsing import parse, parse_cif
from ase_unimat.data.records import READ_ERRORS, RawRecord, Record, RecordError, unreadable

__all__ = [
    "READ_ERRORS",
    "STRUCTURE_SUFFIXES",
    "RawRecord",
    "Record",
    "RecordError",
    "expand_inputs",
    "input_format",
    "iter_raw",
    "iter_records",
    "parse",
    "parse_cif",
    "read_structures",
]


def expand_inputs(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """Input paths with globs expanded (sorted); FileNotFoundError for a path or glob that matches nothing."""
    paths: list[Path] = []
    for item in inputs:
        text = os.fspath(item)
        if glob.has_magic(text):
            matches = sorted(glob.glob(text))
            if not matches:
                raise FileNotFoundError(f"no file matches {text!r}")
            paths.extend(Path(m) for m in matches)
        elif os.path.exists(text):
            paths.append(Path(text))
        else:
            raise FileNotFoundError(f"no such file or directory: {text}")
    return paths


def iter_raw(path: str | os.PathLike) -> Iterator[RawRecord]:
    """Raw records of one input, in a fixed order (see module docstring).

    A file that stops being readable ends with one ``unreadable`` error record (the records read
    before it come first); the same bytes always give the same records, so resuming stays exact.
    """
    path = Path(path)
    count = 0
    try:
        for raw in iter_source(path):
            yield raw
            count += 1
    except READ_ERRORS as err:
        yield unreadable(path, count, f"{type(err).__name__}: {one_line(err, limit=300, empty='(no message)')}")


def iter_records(path: str | os.PathLike) -> Iterator[Record]:
    """Parsed records of one input."""
    for raw in iter_raw(path):
        yield parse(raw)


def read_structures(path: str | os.PathLike, *, limit: int | None = None) -> list[Atoms]:
    """Every structure of one input (any source above) as ``ase.Atoms``, at most ``limit``, in order.

    For a CSV, ``info["material_id"]`` holds the record id (a file's name is no id, so other inputs
    pair by order). Unlike the converter, which skips a bad record, this raises
    :class:`RecordError` naming it (an evaluation must not silently drop a structure).
    """
    keep_ids = input_format(path) == "csv"
    out = []
    for raw in itertools.islice(iter_raw(path), limit):
        record = parse(raw)
        structure = record.structure_or_error
        if isinstance(structure, RecordError):
            raise RecordError(structure.reason, f"{record.source}: {structure.message}")
        atoms = structure if isinstance(structure, Atoms) else _to_atoms(structure)
        if keep_ids:
            atoms.info["material_id"] = record.record_id
        out.append(atoms)
    return out


def _to_atoms(structure) -> Atoms:
    from pymatgen.io.ase import AseAtomsAdaptor  # pymatgen is slow to import; only for CIFs it parsed

    return AseAtomsAdaptor.get_atoms(structure)
