"""The ``Search`` object: seeds in, relaxed and ranked structures out (the loop behind ``unimat-airss``).

In the manner of ASE's optimizers: :meth:`Search.irun` is a generator yielding each finished
relaxation as it completes, :meth:`Search.run` runs it to the end and returns the ranking, and
:meth:`Search.attach` registers observers called every ``interval`` finished relaxations.

Seed ``k`` of a run is fully determined by ``(run_seed, k)``: its number of formula units
(:func:`formula_units_of`), its source (the mixing allocation) and its structure. With an ``out``
directory every finished seed is stored at once (see :mod:`ase_unimat.search.store`), so running
the same search again continues where it stopped and a larger ``n`` adds seeds.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import hashlib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ase_unimat.core import formula as formula_module
from ase_unimat.core.formula import FormulaError, format_formula, parse_formula
from ase_unimat.search.buildcell import read_cell
from ase_unimat.search.calc_options import check_options
from ase_unimat.search.calculators import check_calculator_spec, describe_calculator
from ase_unimat.search.pool import RelaxPool
from ase_unimat.search.rank import Ranking, rank, write_csv, write_database, write_unique_res
from ase_unimat.search.relax import RelaxResult, RelaxSettings, RelaxTask
from ase_unimat.search.report import make_report
from ase_unimat.search.seed_registry import make_seed_sources
from ase_unimat.search.seeds import seed_rng
from ase_unimat.search.store import RunStore


class SearchError(ValueError):
    """Options of a search that cannot work (the message says which and why)."""


def parse_formula_units(value: int | Sequence[int] | str) -> tuple[int, int]:
    """:func:`ase_unimat.core.formula.parse_formula_units`, raising :class:`SearchError`."""
    try:
        return formula_module.parse_formula_units(value)
    except FormulaError as err:
        raise SearchError(str(err)) from None


def formula_units_of(index: int, bounds: tuple[int, int], *, run_seed: int) -> int:
    """Formula units of seed ``index``: uniform in ``bounds``, a function of ``(run_seed, index)`` only."""

    low, high = bounds
    if low == high:
        return low
    return int(seed_rng(run_seed, "formula-units", index).integers(low, high + 1))


def _strengths(value: float | Sequence[float] | None) -> tuple[float, ...] | None:
    """``unimat_strength`` as a tuple of levels in (0, 1] (None stays None)."""
    if value is None:
        return None
    levels = (value,) if isinstance(value, (int, float)) else tuple(value)
    try:
        levels = tuple(float(level) for level in levels)
    except (TypeError, ValueError):
        raise SearchError(f"unimat strength must be numbers in (0, 1], got {value!r}") from None
    if not levels or not all(0.0 < level <= 1.0 for level in levels):
        raise SearchError(f"unimat strength must be numbers in (0, 1], got {value!r}")
    return levels


class Search:
    """An AIRSS-style search: make seeds, relax each with a calculator, unite duplicates and rank.

    Parameters
    ----------
    formula
        Composition to search (``"Mg2SiO4"`` or counts), or the path of an AIRSS ``.cell`` seed file
        (then the cell file's directives decide composition and seeds).
    calculator
        A calculator spec (``"emt"``, ``"chgnet"``, ``"espresso"``, ``"module:factory"``), an ASE
        calculator object or a factory; see :func:`~ase_unimat.search.calculators.get_calculator`.
    calculator_options
        Keyword options of a named calculator or factory.
    seeds
        Seed spec: ``"unimat-template"`` (default: UniMat denoising noised prototype templates,
        plain UniMat sampling where no template fits), ``"unimat"``, ``"random"``, ``"template"``,
        ``"mixed:0.7"`` or ``"unimat:0.5,template:0.3,random:0.2"``; or any ``SeedSource`` object.
    n
        Number of seeds (indices ``0 .. n-1``).
    formula_units
        Formula units per cell: an int or an inclusive range ``(low, high)``, drawn per seed. Default:
        ``(1, 4)`` for a formula, the seed file's ``#NFORM`` for a ``.cell`` (whose counts then are
        one formula unit of the file).
    pressure, fmax, max_steps, optimizer, time_limit
        Relaxation settings (GPa, eV/Å, steps, ``"FIRE"``/``"BFGS"``, seconds per seed or None).
    workers
        Local worker processes (1: relax in this process). With ``executor`` given, the number of
        seeds kept in flight is ``2 * workers``.
    executor
        Any ``concurrent.futures.Executor`` (e.g. ``dask.distributed.Client(...).get_executor()``).
    out
        Run directory for results and resuming (``None``: keep results in memory only).
    run_seed
        The seed of the whole run.
    model, template_reference
        UniMat model (path or object) and template reference set for those seed sources.
    unimat_strength
        Noise level(s) in (0, 1] of ``unimat-template`` seeds: one value, or one per pass over the
        ranked templates (None: the source's default, 0.3 then 0.5).
    ordered_templates
        Template-based seeds (``template``, ``unimat-template``) also use ordered-substitution
        candidates (:mod:`ase_unimat.search.ordered_templates`); False: prototype substitution alone.
    db
        Also write the unique structures to this ASE database after :meth:`run`.
    plot
        Also draw the report PNGs into ``out/report`` after :meth:`run`.
    refine, refine_options, refine_top
        Two-level search: after every seed is relaxed with ``calculator``, the ``refine_top``
        lowest-enthalpy unique structures are relaxed again with the calculator ``refine`` (options
        ``refine_options``) from their first-level geometry (:class:`~ase_unimat.search.refine.Refine`,
        stored in ``out/refine``). :meth:`irun` then also yields the refinements, and :meth:`run`
        returns the final-level ranking (``self.ranking`` stays the first level's).
    refine_settings
        Relaxation settings of the second level that differ from the first's, e.g.
        ``{"time_limit": 3600, "max_steps": 200}`` (keys of :class:`~ase_unimat.search.relax.RelaxSettings`).
    """

    def __init__(
        self,
        formula: str | Mapping[str, int] | Path | None = None,
        *,
        calculator: Any,
        calculator_options: Mapping[str, Any] | None = None,
        seeds: Any = "unimat-template",
        n: int = 10,
        formula_units: int | Sequence[int] | str | None = None,
        pressure: float = 0.0,
        fmax: float = 0.05,
        max_steps: int = 500,
        optimizer: str = "FIRE",
        time_limit: float | None = None,
        workers: int = 1,
        executor: cf.Executor | None = None,
        out: str | Path | None = None,
        run_seed: int = 0,
        model: Any = None,
        template_reference: Any = None,
        unimat_strength: float | Sequence[float] | None = None,
        ordered_templates: bool = True,
        db: str | Path | None = None,
        plot: bool = False,
        refine: Any = None,
        refine_options: Mapping[str, Any] | None = None,
        refine_top: int = 5,
        refine_settings: Mapping[str, Any] | None = None,
    ) -> None:
        if isinstance(n, bool) or int(n) != n or n < 0:
            raise SearchError(f"n must be a non-negative integer, got {n!r}")
        if isinstance(workers, bool) or int(workers) != workers or workers < 1:
            raise SearchError(f"workers must be a positive integer, got {workers!r}")
        if isinstance(run_seed, bool) or int(run_seed) != run_seed or run_seed < 0:
            raise SearchError(f"run seed must be a non-negative integer, got {run_seed!r}")
        try:
            self.settings = RelaxSettings(
                pressure=float(pressure),
                fmax=float(fmax),
                max_steps=int(max_steps),
                optimizer=str(optimizer).upper(),
                time_limit=None if time_limit is None else float(time_limit),
            )
        except ValueError as err:
            raise SearchError(str(err)) from None
        self.calculator = calculator
        self.calculator_options = check_options(calculator, calculator_options)
        self.n = int(n)
        self.workers = int(workers)
        self.executor = executor
        self.out = Path(out) if out is not None else None
        self.run_seed = int(run_seed)
        self.db = Path(db) if db is not None else None
        self.plot = bool(plot)
        self.cell_file, self.counts, file_units = _target(formula)
        if formula_units is None and file_units is None:
            raise SearchError(f"{formula}: #NFORM is a range; give the formula units explicitly (--formula-units)")
        self.formula_units = parse_formula_units(formula_units if formula_units is not None else file_units)
        check_calculator_spec(calculator, symbols=list(self.counts), options=self.calculator_options)
        self.seed_spec = seeds
        self.model = model
        self.template_reference = template_reference
        self.unimat_strength = _strengths(unimat_strength)
        self.ordered_templates = bool(ordered_templates)
        self.source = self._seed_source()
        self._check_file_seeds()
        if refine is None and (refine_options or refine_settings):
            raise SearchError("refine options or settings were given without a refine calculator")
        self.refiner = None
        if refine is not None:
            from ase_unimat.search.refine import Refine

            try:
                second = dataclasses.replace(self.settings, **dict(refine_settings or {}))
            except (TypeError, ValueError) as err:
                raise SearchError(f"refine settings: {err}") from None
            self.refiner = Refine(self, calculator=refine, calculator_options=refine_options, top=refine_top,
                                  settings=second, workers=self.workers, executor=self.executor)  # fmt: skip
        self.refined: list[RelaxResult] = []  # refinements finished by this object
        self.refined_ranking: Ranking | None = None
        self.results: list[RelaxResult] = []  # relaxations finished by this object (not earlier runs)
        self.last_result: RelaxResult | None = None
        self.ranking: Ranking | None = None
        self.observers: list[tuple[Callable[..., Any], int, tuple, dict]] = []

    # -- observers -------------------------------------------------------------------------------
    def attach(self, function: Callable[..., Any], interval: int = 1, *args: Any, **kwargs: Any) -> None:
        """Call ``function(*args, **kwargs)`` after every ``interval`` finished relaxations.

        Inside the call, ``search.last_result`` is the relaxation just finished and
        ``search.results`` all finished so far in this run.
        """
        if int(interval) < 1:
            raise SearchError(f"observer interval must be >= 1, got {interval}")
        self.observers.append((function, int(interval), args, kwargs))

    def _call_observers(self) -> None:
        done = len(self.results) + len(self.refined)
        for function, interval, args, kwargs in self.observers:
            if done % interval == 0:
                function(*args, **kwargs)

    # -- the loop --------------------------------------------------------------------------------
    def irun(self) -> Iterator[RelaxResult]:
        """Relax every seed not yet finished, yielding each result as it completes; then any refinements.

        Refinements (``seed_info["level"] == 2``) are yielded after the last first-level result.
        """
        if self.refiner is None:
            yield from self._irun_first()
            return
        self._open_store()
        self.refiner.open_store()  # a changed refine option is refused before anything is relaxed
        yield from self._irun_first()
        for result in self.refiner.irun():
            self.refined.append(result)
            self.last_result = result
            self._call_observers()
            yield result

    def _irun_first(self) -> Iterator[RelaxResult]:
        store = self._open_store()
        done = store.finished_indices() if store else set()
        pending = [k for k in range(self.n) if k not in done]
        pool = RelaxPool(workers=self.workers, executor=self.executor)
        index_of: dict[int, int] = {}  # id(task) -> seed index

        def tasks() -> Iterator[RelaxTask]:
            for seed, index in self._seeds(pending, chunk=8 if pool.serial else pool.in_flight):
                task = self._task(seed)
                index_of[id(task)] = index
                yield task

        try:
            for task, result in pool.imap(tasks()):
                yield self._finish(result, index_of.pop(id(task)), store)
        finally:
            if store is not None:
                store.close()

    def run(self) -> Ranking:
        """Run the search to the end and return the ranking of every finished seed of the run.

        With ``refine``, the first-level ranking is written as usual and the final-level ranking
        (``out/refine``) is returned.
        """
        for _ in self.irun():
            pass
        ranking = self.rank()
        if self.refiner is None:
            return ranking
        self.refined_ranking = self.refiner.rank()
        return self.refined_ranking

    def rank(self) -> Ranking:
        """Unite duplicates and rank all finished seeds (from ``out`` when set); write the outputs."""
        store = RunStore(self.out) if self.out is not None else None
        if store is not None:
            store.lock()  # the outputs are rewritten under the run's lock, as the records are
        try:
            results = store.results() if store else list(self.results)
            self.ranking = rank(results)
            if self.out is not None:
                write_csv(self.ranking, self.out / "ranked.csv")
                write_unique_res(self.ranking, self.out / "unique", owned=store.finished_ids())
                if self.plot:
                    make_report(self.out)
        finally:
            if store is not None:
                store.close()
        if self.db is not None:
            write_database(self.ranking, self.db)
        return self.ranking

    def _task(self, seed: Any) -> RelaxTask:
        return RelaxTask(
            id=seed.id,
            source=seed.source,
            atoms=seed.atoms,
            calculator=self.calculator,
            calculator_options=tuple(sorted(self.calculator_options.items())),
            settings=self.settings,
        )

    def _finish(self, result: RelaxResult, index: int, store: RunStore | None) -> RelaxResult:
        result.seed_info["index"] = int(index)
        if store is not None:
            store.save(result)
        self.results.append(result)
        self.last_result = result
        self._call_observers()
        return result

    # -- seeds -----------------------------------------------------------------------------------
    def _seeds(self, indices: list[int], *, chunk: int) -> Iterator[tuple[Any, int]]:
        """Seeds for ``indices`` in order, made ``chunk`` at a time (one ``make`` call per formula-unit group)."""
        for start in range(0, len(indices), max(1, chunk)):
            block = indices[start : start + chunk]
            groups: dict[int, list[int]] = {}
            for k in block:
                groups.setdefault(formula_units_of(k, self.formula_units, run_seed=self.run_seed), []).append(k)
            made: dict[int, Any] = {}
            for units, group in groups.items():
                counts = {symbol: c * units for symbol, c in self.counts.items()}
                made.update(zip(group, self.source.make(counts, group, run_seed=self.run_seed), strict=True))
            for k in block:
                yield made[k], k

    def _seed_source(self) -> Any:
        if not isinstance(self.seed_spec, str):
            if not hasattr(self.seed_spec, "make"):
                raise SearchError(f"seeds must be a spec string or a SeedSource, got {self.seed_spec!r}")
            return self.seed_spec

        options = None if self.unimat_strength is None else {"strength": self.unimat_strength}
        return make_seed_sources(
            self.seed_spec, model=self.model, template_reference=self.template_reference, cell_spec=self._cell_spec(),
            unimat_options=options, template_options={"ordered": self.ordered_templates},
        )  # fmt: skip

    def _check_file_seeds(self) -> None:
        """Seeds read from files: refuse other compositions now, and relax no more seeds than there are."""
        import warnings

        for part in getattr(self.source, "sources", {}).values():
            if hasattr(part, "check_counts"):
                part.check_counts(self.counts)
                if self.n > len(part):
                    warnings.warn(f"{part.path} holds {len(part)} structures; n={self.n} lowered to it", stacklevel=3)
                    self.n = len(part)

    def _cell_spec(self) -> Any:
        if self.cell_file is None:
            return None

        return read_cell(self.cell_file, nform=1)  # formula units are drawn per seed here

    # -- run directory ---------------------------------------------------------------------------
    def manifest(self) -> dict[str, Any]:
        """The options that decide this search's results (stored in ``out/manifest.json``)."""
        target: dict[str, Any]
        if self.cell_file is not None:
            digest = hashlib.sha256(self.cell_file.read_bytes()).hexdigest()
            target = {"cell_file": self.cell_file.name, "cell_sha256": digest}
        else:
            target = {"counts": dict(sorted(self.counts.items()))}
        seeds = self.seed_spec if isinstance(self.seed_spec, str) else f"object:{type(self.seed_spec).__qualname__}"
        return {
            "target": target,
            "seeds": seeds,
            "formula_units": list(self.formula_units),
            "run_seed": self.run_seed,
            "calculator": describe_calculator(self.calculator),
            "calculator_options": json.loads(json.dumps(self.calculator_options, default=str)),
            "settings": dataclasses.asdict(self.settings),
            "model": None if self.model is None else str(self.model),
            "template_reference": None if self.template_reference is None else str(self.template_reference),
            "n": self.n,
            **({} if self.unimat_strength is None else {"unimat_strength": list(self.unimat_strength)}),
            **({} if self.ordered_templates else {"ordered_templates": False}),
        }

    def _open_store(self) -> RunStore | None:
        if self.out is None:
            return None
        store = RunStore(self.out)
        store.open(self.manifest())
        return store


def _target(formula: Any) -> tuple[Path | None, dict[str, int], tuple[int, int] | None]:
    """(cell file or None, counts of one formula unit, default formula units) of ``formula``."""
    if isinstance(formula, Path) or (isinstance(formula, str) and formula.strip().lower().endswith(".cell")):
        path = Path(formula)
        if not path.is_file():
            raise SearchError(f"seed file {path} not found")

        spec = read_cell(path, nform=1)  # any other mistake in the file is raised here
        try:
            nform = read_cell(path).nform
        except ValueError:  # a #NFORM range: the caller must give the formula units
            return path, dict(spec.seed_counts), None
        return path, dict(spec.seed_counts), (nform, nform)
    if isinstance(formula, Mapping):
        counts = {str(k): int(v) for k, v in formula.items()}
        if min(counts.values(), default=0) < 1:
            raise FormulaError(f"element counts must be positive, got {counts}")
        parse_formula(format_formula(counts))  # validates element symbols
        return None, counts, (1, 4)
    if formula is None:
        raise SearchError("give a formula (e.g. 'Mg2SiO4') or an AIRSS .cell seed file")
    return None, parse_formula(str(formula)), (1, 4)
