"""The second level of a two-level search: relax the best unique structures again with a second calculator.

A cheap calculator (an ML potential) relaxes every seed; duplicates are united (:func:`rank`); the
``top`` lowest-enthalpy unique structures are then relaxed again, from their first-level geometry,
with the calculator one trusts (DFT), and ranked by that final level. :class:`Refine` is that step,
in the manner of :class:`~ase_unimat.search.search.Search`: :meth:`Refine.irun` yields each
refinement as it finishes, :meth:`Refine.run` returns the final ranking.

Run directory: the first level lives in ``out/`` as before; the second in ``out/refine/``, a run
store of its own (:class:`~ase_unimat.search.store.RunStore`: ``manifest.json``, ``records/``,
``res/`` with exact AIRSS TITL lines, ``unique/``, ``ranked.csv``). A refinement is named by its
first-level structure and counts as done once its record exists, so a rerun after ``kill -9``
repeats none; a failed refinement is recorded with its reason and the others go on. Each record
keeps the structure's first-level rank and enthalpy (``seed_info["level1_*"]``), which the final
table and CSV show beside the final-level values.
"""

from __future__ import annotations

import concurrent.futures as cf
import csv
import dataclasses
import io
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ase_unimat.core.atomic import atomic_write_text
from ase_unimat.search.calc_options import check_options
from ase_unimat.search.calculators import check_calculator_spec, describe_calculator
from ase_unimat.search.pool import RelaxPool
from ase_unimat.search.rank import CSV_COLUMNS, RankedStructure, Ranking, rank, write_unique_res
from ase_unimat.search.relax import RelaxResult, RelaxSettings, RelaxTask
from ase_unimat.search.store import RunStore

#: Sub-folder of a run directory holding the second level.
REFINE_DIR = "refine"

#: Columns of ``refine/ranked.csv``: the ranking's, the first-level values beside them, the status.
REFINE_COLUMNS = (
    *CSV_COLUMNS,
    "level1_rank",
    "level1_enthalpy_per_fu_eV",
    "level1_relative_enthalpy_per_fu_eV",
    "status",
    "reason",
)


class RefineError(ValueError):
    """Options of a refinement that cannot work (the message says which)."""


class Refine:
    """Relax the ``top`` best unique structures of a first-level search again with another calculator.

    Parameters
    ----------
    first
        The first level: a :class:`~ase_unimat.search.search.Search` (its run directory, or its
        in-memory results without one) or the path of a run directory.
    calculator
        Second-level calculator spec (``"espresso"``, ``"chgnet"``, ``"module:factory"``, object...).
    calculator_options
        Its options (checked by :func:`~ase_unimat.search.calc_options.check_options`).
    top
        How many unique first-level structures to refine (lowest enthalpy per formula unit first).
    settings
        Relaxation settings (default: the first level's).
    workers, executor
        As in ``Search``: local processes, or any ``concurrent.futures.Executor``.
    """

    def __init__(
        self,
        first: Any,
        *,
        calculator: Any,
        calculator_options: Mapping[str, Any] | None = None,
        top: int = 5,
        settings: RelaxSettings | None = None,
        workers: int = 1,
        executor: cf.Executor | None = None,
    ) -> None:
        if isinstance(top, bool) or not isinstance(top, int) or top < 1:
            raise RefineError(f"refine top must be a positive integer (structures to refine), got {top!r}")
        self.first = first
        if isinstance(first, str | Path):
            store = RunStore(first)
            if not store.manifest_path.is_file():
                raise RefineError(f"{first} is not a unimat-airss run directory (no manifest.json)")
            manifest = store.read_manifest()
            self.out: Path | None = Path(first)
            self.first_calculator = str(manifest.get("calculator"))
            default_settings = RelaxSettings(**manifest.get("settings", {}))
            symbols = sorted(manifest.get("target", {}).get("counts", {}))
        else:
            self.out = first.out
            self.first_calculator = describe_calculator(first.calculator)
            default_settings = first.settings
            symbols = sorted(first.counts)
        self.calculator = calculator
        self.calculator_options = check_options(calculator, calculator_options, flag="--refine-opt")
        check_calculator_spec(calculator, symbols=symbols, options=self.calculator_options)
        self.top = int(top)
        self.settings = settings or default_settings
        self.workers = int(workers)
        self.executor = executor
        self.results: list[RelaxResult] = []  # refinements finished by this object
        self.first_ranking: Ranking | None = None
        self.ranking: Ranking | None = None

    # -- what to refine --------------------------------------------------------------------------
    def first_results(self) -> list[RelaxResult]:
        """Every finished first-level relaxation (from the run directory when there is one)."""
        if self.out is not None:
            return RunStore(self.out).results()
        return list(self.first.results)

    def candidates(self) -> list[tuple[int, RankedStructure]]:
        """(first-level rank, structure) of the ``top`` best unique first-level structures."""
        self.first_ranking = rank(self.first_results())
        return list(enumerate(self.first_ranking.structures[: self.top], start=1))

    # -- the loop --------------------------------------------------------------------------------
    def manifest(self) -> dict[str, Any]:
        """What decides the refinements (``out/refine/manifest.json``; ``n`` is ``top``)."""
        return {
            "level": "refine",
            "first_calculator": self.first_calculator,
            "calculator": describe_calculator(self.calculator),
            "calculator_options": json.loads(json.dumps(self.calculator_options, default=str)),
            "settings": dataclasses.asdict(self.settings),
            "n": self.top,
        }

    def open_store(self) -> RunStore | None:
        """Create or check ``out/refine`` (raises ``RunDirectoryError`` naming a changed option)."""
        if self.out is None:
            return None
        store = RunStore(self.out / REFINE_DIR)
        store.open(self.manifest())
        return store

    def irun(self) -> Iterator[RelaxResult]:
        """Refine every candidate not refined yet, yielding each result as it finishes."""
        store = self.open_store()
        try:
            done = store.finished_ids() if store else {r.id for r in self.results}
            tasks = [
                self._task(place, structure) for place, structure in self.candidates() if structure.best.id not in done
            ]
            for _, result in RelaxPool(workers=self.workers, executor=self.executor).imap(tasks):
                result.seed_info["level"] = 2
                if store is not None:
                    store.save(result)
                self.results.append(result)
                yield result
        finally:
            if store is not None:
                store.close()

    def run(self) -> Ranking:
        """Refine to the end; return the final-level ranking (also written to ``out/refine``)."""
        for _ in self.irun():
            pass
        return self.rank()

    def rank(self) -> Ranking:
        """Unite and rank every refinement by its final-level enthalpy; write ``ranked.csv`` and ``unique/``."""
        store = RunStore(self.out / REFINE_DIR) if self.out is not None else None
        results = store.results() if store and store.records_dir.is_dir() else list(self.results)
        self.ranking = rank(results)
        if store is not None:
            write_refined_csv(self.ranking, store.root / "ranked.csv")
            write_unique_res(self.ranking, store.root / "unique")
        return self.ranking

    def _task(self, place: int, structure: RankedStructure) -> RelaxTask:
        best = structure.best
        atoms = best.atoms.copy()
        atoms.info.clear()
        atoms.info.update(
            {k: v for k, v in best.seed_info.items() if not k.startswith("level")},
            level1_rank=place,
            level1_id=best.id,
            level1_enthalpy_per_fu=structure.enthalpy_per_fu,
            level1_relative_enthalpy_per_fu=structure.relative_enthalpy_per_fu,
            level1_times_found=structure.times_found,
            level1_calculator=self.first_calculator,
        )
        return RelaxTask(
            id=best.id,
            source=best.source,
            atoms=atoms,
            calculator=self.calculator,
            calculator_options=tuple(sorted(self.calculator_options.items())),
            settings=self.settings,
        )


def level1(structure: RankedStructure) -> tuple[int | None, float | None, float | None]:
    """(rank, enthalpy per f.u., relative enthalpy per f.u.) of a refined structure at the first level."""
    info = structure.best.seed_info
    return info.get("level1_rank"), info.get("level1_enthalpy_per_fu"), info.get("level1_relative_enthalpy_per_fu")


def write_refined_csv(ranking: Ranking, path: str | Path) -> Path:
    """The final-level ranking with the first-level rank and enthalpy beside it, then the failed ones."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=REFINE_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for structure in ranking.structures:
        place, enthalpy, relative = level1(structure)
        writer.writerow({
            **structure.row(),
            "level1_rank": place,
            "level1_enthalpy_per_fu_eV": None if enthalpy is None else round(enthalpy, 6),
            "level1_relative_enthalpy_per_fu_eV": None if relative is None else round(relative, 6),
            "status": "ok",
            "reason": "",
        })  # fmt: skip
    for failed in ranking.failed:
        info = failed.seed_info
        writer.writerow({"name": failed.id, "pressure_GPa": failed.pressure, "source": failed.source,
                         "level1_rank": info.get("level1_rank"), "status": "failed", "reason": failed.reason,
                         "level1_enthalpy_per_fu_eV": info.get("level1_enthalpy_per_fu")})  # fmt: skip
    path = Path(path)
    atomic_write_text(path, buffer.getvalue())
    return path


def format_refined_table(ranking: Ranking, *, calculator: str = "", first_calculator: str = "") -> str:
    """The final ranking as text: final-level dH/fu, then the first-level rank and dH/fu of each structure."""
    if not ranking.structures:
        return f"no successful refinement ({len(ranking.failed)} failed)"
    rows = ranking.structures
    width = max(24, *(len(r.best.id) for r in rows), *(len(f.id) for f in ranking.failed))
    top = f"final level{f' ({calculator})' if calculator else ''}; L1 = first level{f' ({first_calculator})' if first_calculator else ''}"
    header = f"{'name':<{width}} {'dH/fu':>9} {'H/fu':>12} {'#fu':>4} {'spg':<11} {'L1 rank':>7} {'L1 dH/fu':>9}"
    lines = [top, f"best enthalpy per formula unit: {rows[0].enthalpy_per_fu:.6f} eV", header, "-" * len(header)]
    for r in rows:
        place, _, relative = level1(r)
        lines.append(
            f"{r.best.id:<{width}} {r.relative_enthalpy_per_fu:9.4f} {r.enthalpy_per_fu:12.5f} {r.n_fu:4d} "
            f"{r.best.spacegroup or 'P1':<11} {place if place is not None else '-':>7} "
            f"{relative if relative is not None else float('nan'):9.4f}"
            + ("" if r.best.converged else "  (not converged)")
        )
    for failed in ranking.failed:
        lines.append(
            f"{failed.id:<{width}} FAILED (L1 rank {failed.seed_info.get('level1_rank', '-')}): {failed.reason}"
        )
    lines.append(f"{len(rows)} unique of {ranking.n_relaxed} refined, {len(ranking.failed)} failed")
    return "\n".join(lines)
