"""Seeds read from existing structures: ``--seeds file:PATH``.

``PATH`` is a structure file, a folder, a glob (``"runs/*.cif"``) or the run directory of an earlier
search. Files are read with ``ase.io`` by their names: ``.res``, ``.cif``, ``.extxyz``/``.xyz`` (all
frames), ``POSCAR``/``CONTCAR``/``.vasp``. A folder contributes those files in name order; a run
directory (one with ``manifest.json``) contributes its unique structures (``unique/``, else every
relaxed one in ``res/``), lowest enthalpy per atom first, so a search can be continued, refined or
re-ranked with another calculator.

Seed ``k`` is the ``k``-th structure of that list (independent of the run seed: the files are the
randomness). Every structure must have the search's composition (any number of formula units);
others are refused, by file name, before anything is relaxed.
"""

from __future__ import annotations

import glob
import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

from ase import Atoms

from ase_unimat.core.formula import format_formula, reduce_counts
from ase_unimat.core.messages import one_line
from ase_unimat.search.seeds import Seed, SeedSourceError, make_seed

#: File name suffix -> ``ase.io`` format.
FORMATS = {".res": "res", ".cif": "cif", ".extxyz": "extxyz", ".xyz": "extxyz", ".vasp": "vasp", ".poscar": "vasp"}


def structure_format(path: Path) -> str | None:
    """The ``ase.io`` format of a structure file from its name (None: not a structure file)."""
    name = path.name.lower()
    if name.startswith(("poscar", "contcar")):
        return "vasp"
    return FORMATS.get(path.suffix.lower())


def structure_files(path: str | Path) -> list[Path]:
    """The files ``PATH`` of ``file:PATH`` names (see the module docstring), in seed order."""
    text = str(path)
    if any(c in text for c in "*?["):
        return [Path(p) for p in sorted(glob.glob(text)) if Path(p).is_file()]
    folder = Path(text)
    if folder.is_file():
        return [folder]
    if not folder.is_dir():
        raise SeedSourceError(f"file:{text}: no such file, folder or glob match")
    if (folder / "manifest.json").is_file():
        for sub in ("unique", "res"):
            found = sorted((folder / sub).glob("*.res"))
            if found:
                return sorted(found, key=_enthalpy_per_atom_key)
        return []
    return [p for p in sorted(folder.iterdir()) if p.is_file() and structure_format(p)]


def _enthalpy_per_atom_key(path: Path) -> tuple[float, str]:
    """(enthalpy per atom from the TITL line, name): AIRSS fields 5 (enthalpy) and 8 (atoms)."""
    try:
        fields = path.read_text().split("\n", 1)[0].split()
        value = float(fields[4]) / int(fields[7])
    except (OSError, IndexError, ValueError, ZeroDivisionError):
        value = math.inf
    return value, path.name


def read_structures(path: str | Path) -> list[tuple[str, Atoms]]:
    """(label, structure) of every readable structure under ``PATH``; unreadable files are warned about.

    Raises
    ------
    SeedSourceError
        If no structure can be read at all.
    """
    from ase.io import read

    files = structure_files(path)
    out: list[tuple[str, Atoms]] = []
    problems: list[str] = []
    for file in files:
        fmt = structure_format(file) or "extxyz"
        try:
            frames = read(str(file), index=":", format=fmt)
        except Exception as err:  # each reader raises its own kinds of error
            problems.append(f"{file.name}: {one_line(err, limit=80)}")
            continue
        frames = [atoms for atoms in frames if len(atoms)]
        if not frames:
            problems.append(f"{file.name}: no atoms in it")
            continue
        for i, atoms in enumerate(frames):
            label = file.name if len(frames) == 1 else f"{file.name}@{i}"
            out.append(
                (label, Atoms(numbers=atoms.numbers, cell=atoms.cell.array, positions=atoms.positions, pbc=True))
            )
    if not out:
        tried = f"{len(files)} file(s)" + (f": {'; '.join(problems[:3])}" if problems else "")
        raise SeedSourceError(f"file:{path}: no readable structure (.res, .cif, .extxyz, POSCAR) found ({tried})")
    if problems:
        warnings.warn(
            f"file:{path}: skipped {len(problems)} unreadable file(s): {'; '.join(problems[:3])}", stacklevel=2
        )
    return out


class FileSeedSource:
    """Seeds that are structures read from files (a :class:`~ase_unimat.search.seeds.SeedSource`).

    Parameters
    ----------
    path
        File, folder, glob or earlier run directory (read at once: errors come before any relaxation).
    """

    name = "file"

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self.structures = read_structures(path)

    def __len__(self) -> int:
        return len(self.structures)

    def check_counts(self, counts: Mapping[str, int]) -> None:
        """Raise :class:`SeedSourceError` naming every structure whose composition is not ``counts``'s."""
        target = reduce_counts(counts)[0]
        wrong = []
        for label, atoms in self.structures:
            reduced = reduce_counts(_counts(atoms))[0]
            if reduced != target:
                wrong.append(f"{label} ({format_formula(reduced)})")
        if wrong:
            more = f" and {len(wrong) - 5} more" if len(wrong) > 5 else ""
            raise SeedSourceError(
                f"file:{self.path}: {len(wrong)} structure(s) are not {format_formula(target)}: "
                f"{', '.join(wrong[:5])}{more}"
            )

    def make(self, counts: Mapping[str, int], indices: Sequence[int], *, run_seed: int) -> list[Seed]:
        """The structures at ``indices`` (the target ``counts`` only name them; each keeps its own cell)."""
        seeds = []
        for k in indices:
            if not 0 <= int(k) < len(self.structures):
                raise SeedSourceError(f"file:{self.path} holds {len(self.structures)} structures, no seed {k}")
            label, atoms = self.structures[int(k)]
            own = _counts(atoms)
            named = {el: own[el] for el in counts if el in own} if set(own) == set(counts) else own  # target's order
            seeds.append(make_seed(atoms.copy(), named, self.name, int(k), run_seed=run_seed, file=label))
        return seeds


def _counts(atoms: Atoms) -> dict[str, int]:
    counts: dict[str, int] = {}
    for symbol in atoms.get_chemical_symbols():
        counts[symbol] = counts.get(symbol, 0) + 1
    return counts
