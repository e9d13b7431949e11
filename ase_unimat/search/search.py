"""The ``Search`` object: seeds in, relaxed and ranked structures out (the loop behind ``unimat-airss``).

In the manner of ASE's optimizers: :meth:`Search.irun` is a generator yielding each finished
relaxation as it completes, :meth:`Search.run` runs it to the end and returns the ranking, and
:meth:`Search.attach` registers observers called every ``interval`` finished relaxations.

Seed ``k`` of a run is fully determined by ``(run_seed, k)``: its number of formula units
(:func:`formula_units_of`), its source (the mixing allocation) and its structure. With an ``out``
directory every finished seed is stored at once (see :mod:`ase_unimat.search.store`), so running
the same search again continues where it stopped and a larger ``n`` adds seeds.

This module is the :class:`Search` object, whole (the loop, observers, ranking and its run
directory); its options are checked in :mod:`~ase_unimat.search.search_options` and its seeds made
in :mod:`~ase_unimat.search.search_seeds` (``SearchError``, ``parse_formula_units`` and
``formula_units_of`` are re-exported here).
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import hashlib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ase_unimat.model.bundled import resolve_model_path
from ase_unimat.search.calc_options import check_options
from ase_unimat.search.calculators import check_calculator_spec, describe_calculator
from ase_unimat.search.pool import RelaxPool
from ase_unimat.search.rank import Ranking, rank, write_csv, write_database, write_unique_res
from ase_unimat.search.refine import Refine
from ase_unimat.search.relax import RelaxResult, RelaxTask
from ase_unimat.search.report import make_report
from ase_unimat.search.search_options import (
    SearchError,
    parse_formula_units,
    relax_settings,
    search_target,
    unimat_strengths,
    whole_number,
)
from ase_unimat.search.search_seeds import check_file_seeds, formula_units_of, iter_seeds, seed_source
from ase_unimat.search.seeds import SeedSourceError
from ase_unimat.search.store import RunStore, discard_empty_run

__all__ = ["Search", "SearchError", "formula_units_of", "parse_formula_units"]


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
        self.n = whole_number(n, "n", minimum=0)
        self.workers = whole_number(workers, "workers", minimum=1)
        self.run_seed = whole_number(run_seed, "run seed", minimum=0)
        self.settings = relax_settings(pressure, fmax, max_steps, optimizer, time_limit)
        self.calculator = calculator
        self.calculator_options = check_options(calculator, calculator_options)
        self.executor = executor
        self.out = Path(out) if out is not None else None
        self.db = Path(db) if db is not None else None
        self.plot = bool(plot)
        self.cell_file, self.counts, file_units = search_target(formula)
        if formula_units is None and file_units is None:
            raise SearchError(f"{formula}: #NFORM is a range; give the formula units explicitly (--formula-units)")
        self.formula_units = parse_formula_units(formula_units if formula_units is not None else file_units)
        check_calculator_spec(calculator, symbols=list(self.counts), options=self.calculator_options)
        self.seed_spec = seeds
        if isinstance(model, str | Path):
            try:
                resolve_model_path(model)  # a wrong name fails here, before the run directory exists
            except FileNotFoundError as err:
                raise SearchError(str(err)) from None
        self.model = model
        self.template_reference = template_reference
        self.unimat_strength = unimat_strengths(unimat_strength)
        self.ordered_templates = bool(ordered_templates)
        self.source = seed_source(
            seeds, model=model, template_reference=template_reference, cell_file=self.cell_file,
            unimat_strength=self.unimat_strength, ordered_templates=self.ordered_templates,
        )  # fmt: skip
        self.n = check_file_seeds(self.source, self.counts, self.n)
        if refine is None and (refine_options or refine_settings):
            raise SearchError("refine options or settings were given without a refine calculator")
        self.refiner = None
        if refine is not None:
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
        A run directory this call created is removed again when the seed source cannot build the
        composition before any seed is finished (:func:`~ase_unimat.search.store.discard_empty_run`).
        """
        fresh = self.out is not None and not self.out.exists()
        try:
            if self.refiner is None:
                yield from self._irun_first()
                return
            store = self._open_store()
            try:  # a changed refine option is refused before anything is relaxed
                checked = self.refiner.open_store()
            except BaseException:
                if store is not None:
                    store.close()
                raise
            if checked is not None:
                checked.close()
            yield from self._irun_first(store)
        except SeedSourceError:
            if fresh and self.out is not None:
                discard_empty_run(self.out)
            raise
        for result in self.refiner.irun():
            self.refined.append(result)
            self.last_result = result
            self._call_observers()
            yield result

    def _irun_first(self, store: RunStore | None = None) -> Iterator[RelaxResult]:
        """The first level; ``store`` (opened by the caller, else here) is closed when it ends."""
        store = store if store is not None else self._open_store()
        done = store.finished_indices() if store else set()
        pending = [k for k in range(self.n) if k not in done]
        pool = RelaxPool(workers=self.workers, executor=self.executor)
        index_of: dict[int, int] = {}  # id(task) -> seed index

        def tasks() -> Iterator[RelaxTask]:
            chunk = 8 if pool.serial else pool.in_flight
            seeds = iter_seeds(self.source, self.counts, pending, formula_units=self.formula_units,
                               run_seed=self.run_seed, chunk=chunk)  # fmt: skip
            for seed, index in seeds:
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
