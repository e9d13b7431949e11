"""The records every input is read into: :class:`RawRecord`, :class:`Record` and :class:`RecordError`.

A :class:`RawRecord` is cheap (text or an already-read ``Atoms``, in input order), a :class:`Record`
holds the parsed structure or, for a record that could not be read, a :class:`RecordError` (a short
reason and a message) in its place. :data:`READ_ERRORS` are what broken bytes can raise; the error
records for them (``unreadable``, ``bad_encoding``) are made here, as is :func:`atoms_properties`
(the numbers an ``Atoms`` carries).
"""

from __future__ import annotations

import csv
import sqlite3
import tarfile
import zlib
from pathlib import Path
from typing import NamedTuple

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


def unreadable(path: Path, count: int, why: str) -> RawRecord:
    """The error record that ends a file that cannot be read further."""
    message = f"{path}: stopped after {count} records ({why}); the rest of the file is not read"
    return RawRecord(f"{path.name}:{count}", str(path), "error", RecordError("unreadable", message), {})


def undecodable(text: str) -> bool:
    """Whether ``text`` holds bytes that were not UTF-8 (read with ``errors="surrogateescape"``)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def bad_encoding(record_id: str, source: str, properties: dict) -> RawRecord:
    """The error record of a row or frame whose bytes are not UTF-8."""
    message = f"{source}: not valid UTF-8"
    return RawRecord(record_id, source, "error", RecordError("bad_encoding", message), properties)


def atoms_properties(atoms) -> dict:
    """Numeric ``info`` entries and the calculator's energy of an Atoms."""
    properties = {k: v for k, v in atoms.info.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    if atoms.calc is not None and "energy" in getattr(atoms.calc, "results", {}):
        properties.setdefault("energy", float(atoms.calc.results["energy"]))
    return properties
