"""Unite duplicate structures and rank them by enthalpy per formula unit, like AIRSS's ``ca -r``.

Duplicates: results are visited in order of enthalpy per atom; each is compared with the
representatives (the lowest-enthalpy member) of the groups found so far that have the same reduced
composition and an enthalpy per atom within ``energy_window`` eV (a cheap prefilter), with
pymatgen's ``StructureMatcher`` (primitive cells, volumes scaled, supercells tried, so cells with a
different number of formula units match). A match joins the group; otherwise it starts a new one.
"Times found" is the group size: the AIRSS convergence signal.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ase.calculators.singlepoint import SinglePointCalculator
from ase.db import connect

from ase_unimat.core.atomic import atomic_path, atomic_write_text
from ase_unimat.core.formula import format_formula, reduce_counts
from ase_unimat.core.geometry import atom_counts
from ase_unimat.search.airss_io import write_res
from ase_unimat.search.relax import RelaxResult

CSV_COLUMNS = (
    "name",
    "pressure_GPa",
    "volume_per_fu_A3",
    "enthalpy_per_fu_eV",
    "relative_enthalpy_per_fu_eV",
    "n_fu",
    "formula",
    "spacegroup",
    "times_found",
    "source",
    "found_by",
    "converged",
)


@dataclass
class RankedStructure:
    """One unique structure: its best (lowest enthalpy) relaxation and every seed that found it."""

    best: RelaxResult
    members: list[str] = field(default_factory=list)  # seed ids, best first
    sources: list[str] = field(default_factory=list)  # seed source of each member
    relative_enthalpy_per_fu: float = 0.0

    @property
    def times_found(self) -> int:
        return len(self.members)

    @property
    def found_by(self) -> str:
        """How often each seed source found this structure, e.g. ``"unimat:3;random:1"`` (most first)."""
        tally: dict[str, int] = {}
        for source in self.sources:
            tally[source] = tally.get(source, 0) + 1
        return ";".join(f"{s}:{n}" for s, n in sorted(tally.items(), key=lambda item: (-item[1], item[0])))

    @property
    def n_fu(self) -> int:
        return reduce_counts(atom_counts(self.best.atoms))[1]

    @property
    def formula(self) -> str:
        return format_formula(reduce_counts(atom_counts(self.best.atoms))[0])

    @property
    def enthalpy_per_fu(self) -> float:
        return self.best.enthalpy / self.n_fu

    @property
    def volume_per_fu(self) -> float:
        return self.best.volume / self.n_fu

    def row(self) -> dict[str, Any]:
        """The CSV row of this structure."""
        return {
            "name": self.best.id,
            "pressure_GPa": self.best.pressure,
            "volume_per_fu_A3": round(self.volume_per_fu, 4),
            "enthalpy_per_fu_eV": round(self.enthalpy_per_fu, 6),
            "relative_enthalpy_per_fu_eV": round(self.relative_enthalpy_per_fu, 6),
            "n_fu": self.n_fu,
            "formula": self.formula,
            "spacegroup": self.best.spacegroup or "P1",
            "times_found": self.times_found,
            "source": self.best.source,
            "found_by": self.found_by,
            "converged": self.best.converged,
        }


@dataclass
class Ranking:
    """Unique structures, lowest enthalpy per formula unit first, and the failed relaxations."""

    structures: list[RankedStructure]
    failed: list[RelaxResult]

    def __len__(self) -> int:
        return len(self.structures)

    def __getitem__(self, i: int) -> RankedStructure:
        return self.structures[i]

    def __iter__(self) -> Iterator[RankedStructure]:
        return iter(self.structures)

    @property
    def n_relaxed(self) -> int:
        return sum(s.times_found for s in self.structures)


def rank(
    results: Iterable[RelaxResult],
    *,
    energy_window: float = 0.02,
    ltol: float = 0.2,
    stol: float = 0.3,
    angle_tol: float = 5.0,
) -> Ranking:
    """Group equal structures, keep the lowest enthalpy of each, sort by enthalpy per formula unit.

    Parameters
    ----------
    results
        Finished relaxations (failed ones are kept apart in ``Ranking.failed``).
    energy_window
        Largest enthalpy-per-atom difference (eV) of two results still compared geometrically.
    ltol, stol, angle_tol
        ``StructureMatcher`` tolerances.

    Returns
    -------
    Ranking
    """
    from pymatgen.analysis.structure_matcher import StructureMatcher  # pymatgen is slow to import
    from pymatgen.io.ase import AseAtomsAdaptor  # pymatgen is slow to import

    results = list(results)
    ok = [r for r in results if r.ok and math.isfinite(r.enthalpy)]
    failed = [r for r in results if not (r.ok and math.isfinite(r.enthalpy))]
    ok.sort(key=lambda r: (r.enthalpy / len(r.atoms), r.id))
    matcher = StructureMatcher(
        ltol=ltol, stol=stol, angle_tol=angle_tol, primitive_cell=True, scale=True, attempt_supercell=True
    )
    groups: list[RankedStructure] = []
    structures: list[Any] = []  # pymatgen Structure of each group's representative
    keys: list[tuple] = []  # reduced composition of each group
    for result in ok:
        key = tuple(sorted(reduce_counts(atom_counts(result.atoms))[0].items()))
        per_atom = result.enthalpy / len(result.atoms)
        structure = AseAtomsAdaptor.get_structure(result.atoms)
        for i, group in enumerate(groups):
            close = abs(per_atom - group.best.enthalpy / len(group.best.atoms)) <= energy_window
            if keys[i] == key and close and matcher.fit(structures[i], structure):
                group.members.append(result.id)
                group.sources.append(result.source)
                break
        else:
            groups.append(RankedStructure(best=result, members=[result.id], sources=[result.source]))
            structures.append(structure)
            keys.append(key)
    groups.sort(key=lambda g: (g.enthalpy_per_fu, g.best.id))
    if groups:
        best = groups[0].enthalpy_per_fu
        for group in groups:
            group.relative_enthalpy_per_fu = group.enthalpy_per_fu - best
    return Ranking(structures=groups, failed=failed)


def format_table(ranking: Ranking, *, limit: int | None = None) -> str:
    """A ``ca -r``-style text table (relative enthalpies per formula unit; the best one absolute above).

    The last column says which seed sources found each structure and how often; the CSV's ``source``
    column is the source of the lowest-enthalpy member.
    """
    rows = ranking.structures[:limit] if limit else ranking.structures
    if not rows:
        return f"no successful relaxations ({len(ranking.failed)} failed)"
    width = max(24, *(len(r.best.id) for r in rows))
    header = f"{'name':<{width}} {'P/GPa':>7} {'V/fu':>9} {'dH/fu':>9} {'#fu':>4} {'formula':<12} {'spg':<11} {'n':>4}  found by"
    lines = [
        f"best enthalpy per formula unit: {rows[0].enthalpy_per_fu + rows[0].relative_enthalpy_per_fu:.6f} eV",
        header,
        "-" * len(header),
    ]
    for r in rows:
        lines.append(
            f"{r.best.id:<{width}} {r.best.pressure:7.2f} {r.volume_per_fu:9.3f} {r.relative_enthalpy_per_fu:9.4f} "
            f"{r.n_fu:4d} {r.formula:<12} {r.best.spacegroup or 'P1':<11} {r.times_found:4d}  {r.found_by}"
            + ("" if r.best.converged else "  (not converged)")
        )
    lines.append(f"{len(ranking.structures)} unique of {ranking.n_relaxed} relaxed, {len(ranking.failed)} failed")
    return "\n".join(lines)


def write_csv(ranking: Ranking, path: str | Path) -> Path:
    """Write the ranking table as CSV (columns :data:`CSV_COLUMNS`), atomically."""
    path = Path(path)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for structure in ranking.structures:
        writer.writerow(structure.row())
    atomic_write_text(path, buffer.getvalue())
    return path


def write_unique_res(ranking: Ranking, folder: str | Path) -> list[Path]:
    """One ``.res`` per unique structure with its times-found count (old files in ``folder`` removed)."""

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    keep = set()
    for structure in ranking.structures:
        best = structure.best
        path = write_res(
            folder / f"{best.id}.res",
            best.atoms,
            name=best.id,
            pressure=best.pressure,
            enthalpy=best.enthalpy,
            spacegroup=best.spacegroup or None,
            times_found=structure.times_found,
        )
        keep.add(path.name)
    for stale in folder.glob("*.res"):
        if stale.name not in keep:
            stale.unlink()
    return sorted(folder / name for name in keep)


def write_database(ranking: Ranking, path: str | Path) -> Path:
    """Write the unique structures to an ASE database (replacing the file atomically).

    Each row holds the relaxed structure, its enthalpy as the energy, and key-value pairs
    ``name, source, spacegroup, times_found, pressure, enthalpy_per_fu, relative_enthalpy_per_fu``.
    """

    path = Path(path)
    kind = path.suffix[1:] if path.suffix in (".db", ".json") else "db"
    with atomic_path(path) as tmp, connect(tmp, type=kind, append=False) as db:
        for structure in ranking.structures:
            atoms = structure.best.atoms.copy()
            atoms.calc = SinglePointCalculator(atoms, energy=structure.best.enthalpy)
            db.write(
                atoms,
                name=structure.best.id,
                source=structure.best.source,
                spacegroup=structure.best.spacegroup or "P1",
                times_found=structure.times_found,
                pressure=structure.best.pressure,
                enthalpy_per_fu=structure.enthalpy_per_fu,
                relative_enthalpy_per_fu=structure.relative_enthalpy_per_fu,
                converged=structure.best.converged,
            )
    return path
