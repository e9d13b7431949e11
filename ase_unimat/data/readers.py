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
"""

from __future__ import annotations

import csv
import glob
import gzip
import io
import itertools
import os
import sqlite3
import tarfile
import warnings
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

from ase import Atoms
from ase.db import connect
from ase.io import iread, read
from ase.io.res import Res

from ase_unimat.data.cif_p1 import NotSimpleCif, TooManySites, parse_p1_cif

csv.field_size_limit(2**31 - 1)

STRUCTURE_SUFFIXES = (".cif", ".res")
#: What reading a file can raise when its bytes are broken (truncated, garbage, not the format).
READ_ERRORS = (OSError, EOFError, zlib.error, csv.Error, tarfile.TarError, sqlite3.Error, UnicodeError)


class RecordError(Exception):
    """Why one record could not be read; ``reason`` is a short category such as ``parse_error``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message

    def __reduce__(self):  # pickles across worker processes
        return (RecordError, (self.reason, self.message))


class RawRecord(NamedTuple):
    record_id: str
    source: str  # file (and member or row) the record came from
    kind: str  # "cif" | "res" | "xyz" | "atoms" | "error"
    payload: object  # text for cif/res/xyz, ase.Atoms for atoms, a RecordError for error
    properties: dict  # column name -> raw value (str or number)


class Record(NamedTuple):
    record_id: str
    structure_or_error: object  # ase.Atoms | pymatgen Structure | RecordError
    properties: dict
    source: str


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


def iter_raw(path: str | os.PathLike) -> Iterator[RawRecord]:
    """Raw records of one input, in a fixed order (see module docstring).

    A file that stops being readable ends with one ``unreadable`` error record (the records read
    before it come first); the same bytes always give the same records, so resuming stays exact.
    """
    path = Path(path)
    count = 0
    try:
        for raw in _iter_source(path):
            yield raw
            count += 1
    except READ_ERRORS as err:
        message = " ".join(str(err).split()) or "(no message)"
        yield _unreadable(path, count, f"{type(err).__name__}: {message[:300]}")


def _unreadable(path: Path, count: int, why: str) -> RawRecord:
    """The error record that ends a file that cannot be read further."""
    message = f"{path}: stopped after {count} records ({why}); the rest of the file is not read"
    return RawRecord(f"{path.name}:{count}", str(path), "error", RecordError("unreadable", message), {})


def _undecodable(text: str) -> bool:
    """Whether ``text`` holds bytes that were not UTF-8 (read with ``errors="surrogateescape"``)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _bad_encoding(record_id: str, source: str, properties: dict) -> RawRecord:
    message = f"{source}: not valid UTF-8"
    return RawRecord(record_id, source, "error", RecordError("bad_encoding", message), properties)


def _iter_source(path: Path) -> Iterator[RawRecord]:
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


def parse(raw: RawRecord, *, max_atoms: int | None = None) -> Record:
    """Parse one raw record; failures become a :class:`RecordError` in ``structure_or_error``.

    With ``max_atoms``, a simple P1 CIF with more sites is refused (``too_many_atoms``) before
    any work that grows with the square of the atom count.
    """
    try:
        structure = _parse_payload(raw, max_atoms=max_atoms)
    except RecordError as err:
        return Record(raw.record_id, err, raw.properties, raw.source)
    except Exception as err:  # noqa: BLE001 - any parser failure is this record's problem only
        message = " ".join(str(err).split()) or type(err).__name__
        return Record(raw.record_id, RecordError("parse_error", message[:300]), raw.properties, raw.source)
    record_id = raw.record_id
    if raw.kind == "xyz":  # ids and properties of extxyz frames live in the parsed comment line
        record_id = str(structure.info.get("material_id", structure.info.get("id", record_id)))
        return Record(record_id, structure, {**_atoms_properties(structure), **raw.properties}, raw.source)
    return Record(record_id, structure, raw.properties, raw.source)


def _parse_payload(raw: RawRecord, *, max_atoms: int | None = None):
    if raw.kind == "error":
        raise raw.payload
    if raw.kind == "atoms":
        return raw.payload
    if raw.kind == "cif":
        return parse_cif(raw.payload, max_atoms=max_atoms)
    try:
        if raw.kind == "res":
            return Res.from_string(raw.payload).atoms
        if raw.kind == "xyz":
            return read(io.StringIO(raw.payload), format="extxyz")
    except KeyError as err:  # ase looks chemical symbols up in a dict
        raise RecordError("unknown_element", f"unknown element symbol {err}") from None
    raise ValueError(f"unknown record kind {raw.kind!r}")


def parse_cif(text: str, *, fast: bool = True, max_atoms: int | None = None):
    """The crystal of the first data block of a CIF, as written (no primitive reduction).

    With ``fast``, a simple P1 CIF is read by :func:`ase_unimat.data.cif_p1.parse_p1_cif` (into
    ``ase.Atoms``); everything else, or every CIF without ``fast``, by pymatgen (a ``Structure``).
    With ``max_atoms``, a simple P1 CIF of more sites raises ``RecordError("too_many_atoms")``
    as soon as its sites are counted.
    """
    if fast:
        try:
            return parse_p1_cif(text, max_atoms=max_atoms)
        except TooManySites as err:
            raise RecordError("too_many_atoms", f"{err.count} atoms > max atoms {max_atoms}") from None
        except NotSimpleCif:
            pass
    from pymatgen.io.cif import CifParser  # pymatgen is slow to import

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        structures = CifParser.from_str(text).parse_structures(primitive=False, on_error="raise")
    if not structures:
        raise RecordError("parse_error", "CIF holds no structure")
    return structures[0]


# ------------------------------------------------------------------------------------------------ sources


def _open_text(path: Path, *, errors: str = "strict"):
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8", errors=errors, newline="")
    return open(path, encoding="utf-8", errors=errors, newline="")


def _iter_csv(path: Path) -> Iterator[RawRecord]:
    with _open_text(path, errors="surrogateescape") as handle:  # a bad byte costs its row only
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or "cif" not in reader.fieldnames:
            raise ValueError(f"{path} has no 'cif' column (columns: {reader.fieldnames})")
        for row_number, row in enumerate(reader):
            record_id = (row.get("material_id") or "").strip() or f"{path.name}:{row_number}"
            properties = {k: v for k, v in row.items() if k not in ("cif", None)}
            if any(_undecodable(v) for v in row.values() if isinstance(v, str)):
                yield _bad_encoding(record_id, f"{path}:{row_number}", {})
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


def _atoms_properties(atoms) -> dict:
    """Numeric ``info`` entries and the calculator's energy of an Atoms."""
    properties = {k: v for k, v in atoms.info.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    if atoms.calc is not None and "energy" in getattr(atoms.calc, "results", {}):
        properties.setdefault("energy", float(atoms.calc.results["energy"]))
    return properties


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
    with _open_text(path, errors="surrogateescape") as handle:  # a bad byte costs its frame only
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
            yield _unreadable(path, frame, f"line {pos + 1} should hold the atom count of frame {frame}")
            return
        text = "".join(lines[pos:pos + n + 2])
        if _undecodable(text):
            yield _bad_encoding(record_id, source, {})
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
        properties = _atoms_properties(atoms)
        record_id = str(atoms.info.get("material_id", atoms.info.get("id", record_id)))
        yield RawRecord(record_id, source, "atoms", atoms, properties)
        frame += 1
