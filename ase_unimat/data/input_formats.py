"""Each input format: how a path is recognised (:func:`input_format`) and how its raw records are read.

CSV with a ``cif`` column (ids from ``material_id``, else ``<file>:<row>``), a ``.cif`` / ``.res``
file or a directory of them, a tar archive (a ``metadata.csv`` inside supplies ids and properties),
an ASE database, extended XYZ (split into frames here, so a bad frame costs itself alone) and any
other file ``ase.io`` reads. :func:`iter_source` yields the :class:`~ase_unimat.data.records.RawRecord`
s of one path in a fixed order; a bad row, member or frame becomes an error record in its place.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

from ase.db import connect
from ase.io import iread

from ase_unimat.data.records import (
    READ_ERRORS,
    RawRecord,
    RecordError,
    atoms_properties,
    bad_encoding,
    undecodable,
    unreadable,
)

csv.field_size_limit(2**31 - 1)

STRUCTURE_SUFFIXES = (".cif", ".res")


def input_format(path: str | os.PathLike) -> str:
    """``"csv"``, ``"cif"``, ``"res"``, ``"dir"``, ``"tar"``, ``"db"``, ``"xyz"`` or ``"ase"`` (anything else)."""
    path = Path(path)
    name = path.name.lower()
    if path.is_dir():
        return "dir"
    if name.endswith((".csv", ".csv.gz")):
        return "csv"
    if name.endswith((".tar", ".tar.gz", ".tgz")):
        return "tar"
    if name.endswith(".db"):
        return "db"
    if name.endswith((".xyz", ".extxyz")):
        return "xyz"
    for suffix in STRUCTURE_SUFFIXES:
        if name.endswith(suffix):
            return suffix[1:]
    return "ase"


def iter_source(path: Path) -> Iterator[RawRecord]:
    """The raw records of one path, by its format (a broken file raises one of ``READ_ERRORS``)."""
    kind = input_format(path)
    if kind == "csv":
        yield from _iter_csv(path)
    elif kind == "dir":
        for file in sorted(p for p in path.iterdir() if p.suffix.lower() in STRUCTURE_SUFFIXES and p.is_file()):
            yield _file_record(file)
    elif kind in ("cif", "res"):
        yield _file_record(path)
    elif kind == "tar":
        yield from _iter_tar(path)
    elif kind == "db":
        yield from _iter_db(path)
    elif kind == "xyz":
        yield from _iter_xyz(path)
    else:
        yield from _iter_ase(path)


def open_text(path: Path, *, errors: str = "strict"):
    """A text handle of ``path`` (gzip when it ends in ``.gz``), UTF-8, newlines untranslated."""
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8", errors=errors, newline="")
    return open(path, encoding="utf-8", errors=errors, newline="")


def _iter_csv(path: Path) -> Iterator[RawRecord]:
    with open_text(path, errors="surrogateescape") as handle:  # a bad byte costs its row only
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or "cif" not in reader.fieldnames:
            raise ValueError(f"{path} has no 'cif' column (columns: {reader.fieldnames})")
        for row_number, row in enumerate(reader):
            record_id = (row.get("material_id") or "").strip() or f"{path.name}:{row_number}"
            properties = {k: v for k, v in row.items() if k not in ("cif", None)}
            if any(undecodable(v) for v in row.values() if isinstance(v, str)):
                yield bad_encoding(record_id, f"{path}:{row_number}", {})
                continue
            yield RawRecord(record_id, f"{path}:{row_number}", "cif", row.get("cif") or "", properties)


def _file_record(path: Path) -> RawRecord:
    kind = path.suffix.lower()[1:]
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as err:
        return RawRecord(path.stem, str(path), "error", RecordError("parse_error", str(err)), {})
    return RawRecord(path.stem, str(path), kind, text, {})


def _metadata_lookup(metadata: dict[str, dict], stem: str) -> tuple[str, dict]:
    """(id, properties) of a member stem: exact id, or the id after a ``prefix_`` (``mp_mp-1`` -> ``mp-1``)."""
    if stem in metadata:
        return stem, metadata[stem]
    tail = stem.split("_", 1)[-1]
    if tail in metadata:
        return tail, metadata[tail]
    return stem, {}


def _iter_tar(path: Path) -> Iterator[RawRecord]:
    with tarfile.open(path, "r:*") as archive:
        members: list[tarfile.TarInfo] = []
        stopped: BaseException | None = None
        try:  # member by member, so that a truncated archive still gives the members before the cut
            for member in archive:
                members.append(member)
        except READ_ERRORS as err:
            stopped = err
        metadata: dict[str, dict] = {}
        for member in members:
            if member.isfile() and Path(member.name).name == "metadata.csv":
                text = archive.extractfile(member).read().decode("utf-8", errors="replace")
                for row in csv.DictReader(io.StringIO(text)):
                    if row.get("material_id"):
                        metadata[row["material_id"].strip()] = {k: v for k, v in row.items() if k is not None}
                break
        for member in members:
            suffix = Path(member.name).suffix.lower()
            if not member.isfile() or suffix not in STRUCTURE_SUFFIXES:
                continue
            record_id, properties = _metadata_lookup(metadata, Path(member.name).stem)
            source = f"{path}::{member.name}"
            try:
                text = archive.extractfile(member).read().decode("utf-8", errors="replace")
            except (OSError, tarfile.TarError) as err:
                yield RawRecord(record_id, source, "error", RecordError("parse_error", str(err)), properties)
                continue
            yield RawRecord(record_id, source, suffix[1:], text, properties)
        if stopped is not None:
            raise stopped


def _iter_db(path: Path) -> Iterator[RawRecord]:
    with connect(path) as db:
        for row in db.select():
            properties = {k: v for k, v in row.key_value_pairs.items()}
            if row.get("energy") is not None:
                properties.setdefault("energy", row.energy)
            record_id = str(properties.get("material_id", f"{path.name}:{row.id}"))
            source = f"{path}:{row.id}"
            try:
                atoms = row.toatoms()
            except Exception as err:  # noqa: BLE001
                yield RawRecord(record_id, source, "error", RecordError("parse_error", str(err)), properties)
                continue
            yield RawRecord(record_id, source, "atoms", atoms, properties)


def _iter_xyz(path: Path) -> Iterator[RawRecord]:
    """Frames of an (extended) XYZ file as text, split on the atom-count lines."""
    with open_text(path, errors="surrogateescape") as handle:  # a bad byte costs its frame only
        lines = handle.read().splitlines(keepends=True)
    pos, frame = 0, 0
    while pos < len(lines):
        if not lines[pos].strip():
            pos += 1
            continue
        record_id, source = f"{path.name}:{frame}", f"{path}:{frame}"
        try:
            n = int(lines[pos].split()[0])
            if n < 0:
                raise ValueError(n)
        except ValueError:
            yield unreadable(path, frame, f"line {pos + 1} should hold the atom count of frame {frame}")
            return
        text = "".join(lines[pos : pos + n + 2])
        if undecodable(text):
            yield bad_encoding(record_id, source, {})
        else:
            yield RawRecord(record_id, source, "xyz", text, {})
        pos += n + 2
        frame += 1


def _iter_ase(path: Path) -> Iterator[RawRecord]:
    frames = iread(path, index=":")
    frame = 0
    while True:
        record_id, source = f"{path.name}:{frame}", f"{path}:{frame}"
        try:
            atoms = next(frames)
        except StopIteration:
            return
        except Exception as err:  # noqa: BLE001 - ase.io cannot resume after a failed frame
            message = f"{type(err).__name__}: {err}; the rest of the file is not read"
            yield RawRecord(record_id, source, "error", RecordError("parse_error", message), {})
            return
        properties = atoms_properties(atoms)
        record_id = str(atoms.info.get("material_id", atoms.info.get("id", record_id)))
        yield RawRecord(record_id, source, "atoms", atoms, properties)
        frame += 1
