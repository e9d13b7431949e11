"""The journal of a conversion: atomically written parts that make ``unimat-convert`` resumable, and its run key.

See :mod:`ase_unimat.data.convert` for the crash-safety scheme. A part ``part-<first>-<end>.npz`` holds
the converted structures (sparse) and the skipped records of input positions ``[first, end)``;
``meta.json`` names the run it belongs to by its key (:func:`run_key`: a hash of the inputs' paths,
sizes and mtimes and of every option that changes the output).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ase_unimat.core.atomic import atomic_write, fsync_dir
from ase_unimat.core.formula import format_formula
from ase_unimat.core.periodic_table import z_to_symbol
from ase_unimat.data.convert_options import ConvertOptions
from ase_unimat.data.hdf5 import FORMAT_VERSION, StructureBatch


class JournalError(RuntimeError):
    """A journal folder that belongs to another conversion."""


_PART = re.compile(r"part-(\d+)-(\d+)\.npz")


def _identity(path: Path) -> list:
    """What identifies an input's content for the run key: path, size and mtime (of each file in a folder)."""
    path = path.resolve()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file())
        return [str(path), [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files]]
    stat = path.stat()
    return [str(path), stat.st_size, stat.st_mtime_ns]


def run_key(paths: Sequence[Path], options: ConvertOptions) -> str:
    """Hash of the inputs and of every option that changes the output."""

    ident = {
        "inputs": [_identity(p) for p in paths], "L": options.n_slots, "max_atoms": options.max_atoms,
        "columns": [[c.name, list(c.sources)] for c in options.columns], "dedup": options.dedup,
        "exclude": [_identity(Path(p)) for p in options.exclude], "append": options.append,
        **({"exclude_formulas": [_identity(Path(p)) for p in options.exclude_formulas]}
           if options.exclude_formulas else {}),
        "format_version": FORMAT_VERSION,
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def committed_parts(journal: Path) -> list[Path]:
    """The parts forming a contiguous prefix of input positions (others and temporaries are removed)."""
    found = {}
    for path in journal.iterdir():
        match = _PART.fullmatch(path.name)
        if match:
            found[int(match.group(1))] = (int(match.group(2)), path)
        elif path.name != "meta.json":
            path.unlink()
    parts, position = [], 0
    while position in found:
        end, path = found.pop(position)
        parts.append(path)
        position = end
    for _, path in found.values():
        path.unlink()
    return parts


def printable(text: str) -> str:
    """``text`` with control characters and undecodable bytes escaped (``"a\\x00b"``), safe for CSV and HDF5."""
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in str(text))


def part_end(path: Path) -> int:
    """The input position after the last record of a part."""
    return int(_PART.fullmatch(path.name).group(2))


def _number(value) -> tuple[float, bool, bool]:
    """(value, is_integer, is_numeric) of a raw property value."""
    if isinstance(value, bool):
        return float(value), True, True
    if isinstance(value, int | np.integer):
        return float(value), True, True
    if isinstance(value, float | np.floating):
        return float(value), False, True
    text = str(value).strip()
    if re.fullmatch(r"[+-]?\d+", text):
        return float(int(text)), True, True
    try:
        return float(text), False, True
    except ValueError:
        return float("nan"), False, False


class PartBuilder:
    """Accumulates converted and skipped records of one part, then writes it atomically."""

    def __init__(self, start: int, columns: Sequence[str]) -> None:
        self.start, self.end = start, start
        self.columns = list(columns)
        self.ok: list[tuple] = []
        self.skipped: list[tuple[str, str, str, str]] = []

    def add(self, result: tuple, *, accept) -> None:
        """Take the next record's worker result; ``accept(id, numbers)`` returns ``None`` or a (reason, message) skip."""
        self.end += 1
        if result[0] == "skip":  # ids, sources and messages of skips may hold any character: escaped
            self.skipped.append(tuple(printable(x) for x in result[1:5]))
            return
        verdict = accept(result[1], result[3])
        if verdict:
            self.skipped.append(tuple(printable(x) for x in (result[1], result[2], verdict[0], verdict[1])))
        else:
            self.ok.append(result)

    def write(self, journal: Path) -> Path:
        """Write the part into ``journal`` atomically and return its path."""

        k = len(self.columns)
        values = np.full((len(self.ok), k), np.nan)
        integer = np.ones(k, dtype=bool)
        non_numeric = np.zeros(k, dtype=np.int64)
        formulas = []
        for i, (_, _, _, numbers, _, _, props) in enumerate(self.ok):
            z, counts = np.unique(numbers, return_counts=True)
            formulas.append(format_formula({z_to_symbol(int(a)): int(c) for a, c in zip(z, counts, strict=True)}))
            for j, name in enumerate(self.columns):
                if name in props:
                    values[i, j], is_int, numeric = _number(props[name])
                    integer[j] &= is_int or not numeric
                    non_numeric[j] += not numeric
        arrays = {
            "natoms": np.array([len(r[3]) for r in self.ok], dtype=np.int64),
            "lattice": np.array([r[5] for r in self.ok], dtype=np.float64).reshape(-1, 6),
            "numbers": np.concatenate([r[3] for r in self.ok]) if self.ok else np.zeros(0, np.uint8),
            "frac": np.concatenate([r[4] for r in self.ok]) if self.ok else np.zeros((0, 3), np.float32),
            "material_id": np.array([r[1] for r in self.ok], dtype=str),
            "formula": np.array(formulas, dtype=str),
            "columns": np.array(self.columns, dtype=str), "values": values, "integer": integer,
            "non_numeric": non_numeric, "present": np.sum(~np.isnan(values), axis=0),
            "skipped": np.array(self.skipped, dtype=str).reshape(-1, 4),
        }
        path = journal / f"part-{self.start:012d}-{self.end:012d}.npz"
        atomic_write(path, lambda handle: np.savez(handle, **arrays))
        return path


def load_part(path: Path) -> dict[str, np.ndarray]:
    """All arrays of a part file."""
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def part_batch(part: dict[str, np.ndarray]):
    """The converted structures of a loaded part as a :class:`~ase_unimat.data.hdf5.StructureBatch`."""

    return StructureBatch(
        natoms=part["natoms"], lattice=part["lattice"], numbers=part["numbers"].astype(np.int64), frac=part["frac"],
        material_id=part["material_id"].tolist(), formula=part["formula"].tolist(),
        properties={str(name): part["values"][:, j] for j, name in enumerate(part["columns"])},
    )


def open_journal(journal: Path, key: str, paths: Sequence[Path], *, n_slots: int) -> list[Path]:
    """Create or reopen the journal of run ``key``; its committed parts (JournalError if it is another run's)."""
    meta = journal / "meta.json"
    if journal.exists():
        try:
            previous = json.loads(meta.read_text())["key"]
        except (OSError, ValueError, KeyError):
            previous = None
        if previous is not None and previous != key:
            raise JournalError(f"{journal} holds an unfinished conversion of other inputs or options: rerun "
                                  "that command to finish it, or delete the folder")
        if previous is None:
            shutil.rmtree(journal)
    if not journal.exists():
        journal.mkdir(parents=True)
        fsync_dir(journal.parent)
    if not meta.exists():
        text = json.dumps({"key": key, "inputs": [str(p) for p in paths], "L": n_slots}).encode()
        atomic_write(meta, lambda handle: handle.write(text))
    return committed_parts(journal)
