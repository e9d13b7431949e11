"""Search efficiency: relaxations needed to find held-out ground states, per seed source (CHGNet).

The question (issues 5, 6, 7): how many relaxations does a relax-and-rank search need before it
finds a known ground state when its seeds come from UniMat, from random AIRSS-like generation, from
prototype substitution (templates), or from a mix?

Protocol
- **Targets**: structures of ``mp_20/test`` whose reduced formula occurs nowhere in the training data
  (``mp_20`` train and val, all of ``extra_mp``, any size), in three bins of atoms per cell (1-6,
  7-12, 13-20); per bin a fixed list drawn with ``selection_seed`` (distinct formulas); each target
  is searched with its own cell (same number of formula units).
- **Seeds**: ``n_seeds`` per target and source (seed ``k`` depends only on the run seed, the source
  and ``k``). Sources: ``unimat`` (reverse diffusion from noise), ``unimat-template`` (reverse
  diffusion started from a noised prototype-substitution template), ``random`` (AIRSS-like),
  ``template`` (prototype substitution) and ``mixed``, an equal mix of the pure sources unimat,
  random and template that can be built (run seed + 1, so its seeds differ from the pure
  sources'; the same mix whichever other sources a run selects). Templates come from the training
  structures only. A source that cannot be built (no trained model yet) is skipped with a note; a
  source that has no seed for one target (no template of that stoichiometry) is marked unavailable
  there.
- **Relaxation**: CHGNet, FrechetCellFilter + FIRE, fmax 0.05 eV/A, at most 500 steps (no wall-time
  limit, so results do not depend on the machine's load), through :func:`ase_unimat.search.relax.relax_task`; 2 worker processes with 1 thread each.
  The **reference** is the test structure relaxed the same way.
- **Hit**: a relaxation that finished (status ok) and either matches the relaxed reference
  (pymatgen ``StructureMatcher()`` default tolerances) or has an energy per atom no higher than the
  reference's + 5 meV.
- **Per target and source**: hits ``h`` of ``N``; ``p = h / N``; expected relaxations to a first
  hit ``1 / p_est`` with ``p_est = (h + 0.5) / (N + 1)`` (a Jeffreys-style pseudo-count, applied to
  every target so the estimator is one rule; ``censored`` marks h = 0, where the true value is likely
  larger); mean optimizer steps and wall seconds per seed; best energy above the reference after
  each number of relaxations.
- **Per bin**: geometric means over targets of ``1 / p_est`` per source, and of the ratios in
  ``RATIOS`` (targets where both sources ran).

Relaxations are cached on disk (``bench/.cache/search_efficiency``, one JSON file per relaxation),
keyed by the content of the structure relaxed and the relaxation settings, so a killed run resumes
and a run with an extra source relaxes only the new seeds. Run it with ``python -m bench
search_efficiency [--quick]`` (the default configurations) or ``python -m bench.search_efficiency
--help`` (sources, sizes, model, output name).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import click
import numpy as np

from ase_unimat.search.relax_cache import RelaxCache, cache_key  # noqa: F401 (bench API: se.cache_key)
from bench._cli_types import CommaList, KeyValue
from bench._search_efficiency_config import (  # noqa: F401 (the benchmark's names, used by tests)
    DEFAULT,
    DEFAULT_CACHE_DIR,
    ENERGY_TOLERANCE,
    MODEL_SOURCES,
    PURE_SOURCES,
    QUICK,
    RATIOS,
    RESULTS_DIR,
    SOURCE_ORDER,
    TEMPLATE_OPTIONS,
    TEMPLATE_SOURCES,
    UNIMAT_OPTIONS,
    BenchConfig,
)
from bench._search_efficiency_report import markdown, plot  # noqa: F401 (se.markdown in tests)

BINS: dict[str, tuple[int, int]] = {"1-6": (1, 6), "7-12": (7, 12), "13-20": (13, 20)}
@dataclass
class Target:
    """One held-out structure to find."""

    material_id: str
    formula: str  # reduced formula
    counts: dict[str, int]  # the cell searched
    bin: str
    cif: str = field(repr=False)

    @property
    def natoms(self) -> int:
        return int(sum(self.counts.values()))


# ----------------------------------------------------------------------------------------- targets


def held_out_targets(config: BenchConfig) -> list[Target]:
    """The fixed, seeded list of held-out test structures per size bin."""
    from ase_unimat.evaluation.reference import TRAINING_SOURCES, load_reference_records

    test = load_reference_records(config.data_dir, sources=("mp_20/test",), max_atoms=20)
    training = load_reference_records(config.data_dir, sources=TRAINING_SOURCES, max_atoms=None)
    seen = {r.reduced_formula for r in training}
    rng = np.random.default_rng(config.selection_seed)
    targets = []
    for name in config.bins:
        low, high = BINS[name]
        by_formula: dict[str, Any] = {}
        for record in sorted(test, key=lambda r: r.material_id):
            formula = record.reduced_formula
            if low <= record.natoms <= high and formula not in seen and formula not in by_formula:
                by_formula[formula] = record
        candidates = list(by_formula.values())
        order = rng.permutation(len(candidates))
        for i in order[: config.per_bin]:
            r = candidates[i]
            targets.append(Target(r.material_id, r.reduced_formula, dict(r.counts), name, r.cif))
    return targets


def default_overlap(config: BenchConfig, targets: Sequence[Target]) -> list[str]:
    """Material ids of ``targets`` that the default run also searches (none when ``config`` draws them alike)."""
    if config.selection_seed == DEFAULT.selection_seed:
        return []
    default_ids = {t.material_id for t in held_out_targets(replace(DEFAULT, data_dir=config.data_dir))}
    return sorted(t.material_id for t in targets if t.material_id in default_ids)


# ------------------------------------------------------------------------------------------- seeds


def build_sources(
    config: BenchConfig, targets: Sequence[Target], say: Callable[[str], None]
) -> tuple[dict[str, Any], dict[str, str]]:
    """Seed-source objects by benchmark name (in ``SOURCE_ORDER``), and notes for the sources skipped.

    "mixed" always mixes every pure source that can be built, requested or not, so its seeds do not
    depend on which other sources a run selects.
    """
    from ase_unimat.search.seed_registry import make_seed_sources
    from ase_unimat.search.seeds import NoSeedsForFormula

    wanted = set(config.sources) | (set(PURE_SOURCES) if "mixed" in config.sources else set())
    built: dict[str, Any] = {}
    notes: dict[str, str] = {}
    probe = targets[0].counts
    template_reference = None
    for name in SOURCE_ORDER:
        if name == "mixed" or name not in wanted:
            continue
        try:
            if name in TEMPLATE_SOURCES and template_reference is None:
                template_reference = _template_reference(config, targets)
            source = make_seed_sources(name, model=config.model, template_reference=template_reference,
                                       unimat_options=dict(config.unimat_options),
                                       template_options=config.template_kwargs())  # fmt: skip
            if name in MODEL_SOURCES:
                try:
                    source.make(probe, [0], run_seed=config.run_seed)  # loads the model now: fail early
                except NoSeedsForFormula:
                    pass  # no template for this one target; others may have one
            built[name] = source
        except Exception as err:  # noqa: BLE001 - any reason a source cannot run becomes a note
            notes[name] = f"skipped: {type(err).__name__}: {' '.join(str(err).split())[:300]}"
            say(f"source {name} {notes[name]}")
    sources = {name: source for name, source in built.items() if name in config.sources}
    if "mixed" in config.sources:
        available = [name for name in PURE_SOURCES if name in built]
        if len(available) >= 2:
            spec = ",".join(f"{name}:1" for name in available)
            sources["mixed"] = make_seed_sources(spec, model=config.model, template_reference=template_reference,
                                                 unimat_options=dict(config.unimat_options),
                                                 template_options=config.template_kwargs())  # fmt: skip
            notes["mixed"] = f"equal mix of {', '.join(available)} (run seed + 1)"
        else:
            notes["mixed"] = "skipped: needs at least two available pure sources (unimat, random, template)"
    return sources, notes


def _template_reference(config: BenchConfig, targets: Sequence[Target]) -> Any:
    """A template index over the training structures that could serve any of the targets.

    It holds the structures of each target's stoichiometry and, for ordered substitution, of each of
    its merged compositions (one element fewer); the second kind never matches a target's own
    stoichiometry unless it is one, so plain prototype substitution sees the same candidates.
    """
    from ase_unimat.core.formula import anonymized_formula
    from ase_unimat.evaluation.reference import TRAINING_SOURCES, load_reference_records
    from ase_unimat.search.ordered_templates import merged_compositions
    from ase_unimat.search.templates import TemplateIndex

    wanted = {(anonymized_formula(c), t.natoms) for t in targets for c in [t.counts, *merged_compositions(t.counts)]}
    records = [
        r
        for r in load_reference_records(config.data_dir, sources=TRAINING_SOURCES, max_atoms=20)
        if any(anonymized_formula(r.counts) == pattern and natoms % r.natoms == 0 for pattern, natoms in wanted)
    ]
    return TemplateIndex.from_atoms([r.atoms() for r in records], [r.material_id for r in records])


def make_seeds(source: Any, target: Target, n: int, run_seed: int) -> list[Any]:
    """``n`` seeds of ``source`` for ``target`` (raises ``NoSeedsForFormula`` when there are none)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return source.make(target.counts, list(range(n)), run_seed=run_seed)


# ------------------------------------------------------------------------------------- relaxations


def relax_cache(config: BenchConfig) -> RelaxCache | None:
    """The cache ``config`` asks for (``cache_dir`` None: ``DEFAULT_CACHE_DIR``), or ``None`` for ``""`` (off)."""
    if config.cache_dir == "":
        return None
    return RelaxCache(Path(config.cache_dir) if config.cache_dir is not None else DEFAULT_CACHE_DIR)


@dataclass
class Relaxations:
    """What :func:`relax_all` returns: job key -> ``RelaxResult``, and where the results came from.

    ``from_cache`` jobs were read from the cache; ``relaxed`` structures were relaxed now (jobs
    holding the same structure share one relaxation, so ``from_cache + relaxed <= len(results)``).
    """

    results: dict[str, Any]
    from_cache: int
    relaxed: int


def _job_source(job: str) -> str:
    """The source part of a job key ``<material id>/<source>/<index>``."""
    parts = job.split("/")
    return parts[1] if len(parts) == 3 else job


def relax_all(jobs: Sequence[tuple[str, Any]], config: BenchConfig, say: Callable[[str], None]) -> Relaxations:
    """Relax ``(key, atoms)`` jobs on ``config.workers`` processes through the library's ``RelaxPool``.

    The pool reads and fills the cache (each result is written as soon as its relaxation finishes,
    so a killed run loses only the relaxations in flight) and relaxes one structure held by several
    jobs once. Cached results get the current job's key as ``id`` and its source as ``source``.
    """
    from ase_unimat.search.pool import RelaxPool
    from ase_unimat.search.relax import RelaxSettings, RelaxTask

    settings = RelaxSettings(fmax=config.fmax, max_steps=config.max_steps, time_limit=config.time_limit)
    cache = relax_cache(config)
    threads = (("threads", 1),) if config.calculator in ("chgnet", "sevenn") else ()  # emt takes no options
    tasks = [RelaxTask(id=key, source=_job_source(key), atoms=atoms, calculator=config.calculator,
                       calculator_options=threads, settings=settings) for key, atoms in jobs]  # fmt: skip
    pool = RelaxPool(workers=config.workers, cache=cache, in_flight=max(1, len(tasks)))
    results: dict[str, Any] = {}
    start, said = time.perf_counter(), 0
    for task, result in pool.imap(tasks):
        results[task.id] = result
        if pool.relaxed >= said + 10:
            said = pool.relaxed
            say(f"  {said} relaxations, {time.perf_counter() - start:.0f} s")
    if cache is not None:
        say(f"  {pool.from_cache}/{len(jobs)} relaxations from the cache {cache.root}")
    return Relaxations(results={key: results[key] for key, _ in jobs}, from_cache=pool.from_cache,
                       relaxed=pool.relaxed)  # fmt: skip


# ------------------------------------------------------------------------------------------ scoring


def is_hit(result: Any, reference: Any, matcher: Any) -> bool:
    """Finished, and the reference structure or an energy within ``ENERGY_TOLERANCE`` of it."""
    if not result.ok:
        return False
    if result.energy / len(result.atoms) <= reference.energy / len(reference.atoms) + ENERGY_TOLERANCE:
        return True
    from pymatgen.io.ase import AseAtomsAdaptor

    return bool(
        matcher.fit(AseAtomsAdaptor.get_structure(result.atoms), AseAtomsAdaptor.get_structure(reference.atoms))
    )


def score(results: Sequence[Any], reference: Any, matcher: Any) -> dict[str, Any]:
    """Hit statistics, cost and best-energy curve of one source on one target (seeds in index order)."""
    n = len(results)
    hits = [is_hit(r, reference, matcher) for r in results]
    h = int(sum(hits))
    p_est = (h + 0.5) / (n + 1)
    e_ref = reference.energy / len(reference.atoms)
    above = [(r.energy / len(r.atoms) - e_ref) * 1000 if r.ok else math.inf for r in results]  # meV/atom
    best = np.minimum.accumulate(above).tolist()
    first_hit = next((k + 1 for k, hit in enumerate(hits) if hit), None)
    return {
        "n": n,
        "hits": h,
        "p": h / n,
        "p_est": p_est,
        "expected_relaxations": 1.0 / p_est,
        "censored": h == 0,
        "first_hit": first_hit,
        "steps_per_seed": float(np.mean([r.steps for r in results])),
        "wall_s_per_seed": float(np.mean([r.wall_time for r in results])),
        "failed": int(sum(not r.ok for r in results)),
        "best_mev_above_ref": best,
        "seeds": [
            {
                "id": r.id,
                "origin": r.seed_info.get("source", r.source),
                "status": r.status,
                "reason": r.reason,
                "energy_per_atom": r.energy / len(r.atoms) if r.ok else None,
                "steps": r.steps,
                "wall_s": round(r.wall_time, 2),
                "hit": hit,
            }
            for r, hit in zip(results, hits, strict=True)
        ],  # fmt: skip
    }


def geometric_mean(values: Sequence[float]) -> float:
    """Geometric mean (NaN for an empty list)."""
    return float(np.exp(np.mean(np.log(values)))) if len(values) else math.nan


def summarise(per_target: Sequence[Mapping[str, Any]], sources: Sequence[str], bins: Sequence[str]) -> dict[str, Any]:
    """Per bin: geometric-mean expected relaxations and cost per source, and source ratios."""
    out: dict[str, Any] = {}
    for name in bins:
        rows = [t for t in per_target if t["bin"] == name]
        table: dict[str, Any] = {}
        for source in sources:
            stats = [t["sources"][source] for t in rows if source in t["sources"]]
            if not stats:
                continue
            table[source] = {
                "targets": len(stats),
                "hits": int(sum(s["hits"] for s in stats)),
                "seeds": int(sum(s["n"] for s in stats)),
                "targets_hit": int(sum(s["hits"] > 0 for s in stats)),
                "expected_relaxations_geomean": geometric_mean([s["expected_relaxations"] for s in stats]),
                "steps_per_seed": float(np.mean([s["steps_per_seed"] for s in stats])),
                "wall_s_per_seed": float(np.mean([s["wall_s_per_seed"] for s in stats])),
            }
        ratios = {}
        for a, b in RATIOS:
            pairs = [t["sources"][a]["expected_relaxations"] / t["sources"][b]["expected_relaxations"]
                     for t in rows if a in t["sources"] and b in t["sources"]]  # fmt: skip
            if pairs:
                ratios[f"{a}/{b}"] = {"geomean": geometric_mean(pairs), "targets": len(pairs)}
        out[name] = {"sources": table, "ratios": ratios}
    return out


# ---------------------------------------------------------------------------------- plot, markdown


def run_search_efficiency(
    config: BenchConfig,
    *,
    out_dir: Path,
    quick: bool = False,
    stem: str | None = None,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the benchmark with ``config``; write ``<stem>.png`` and ``<stem>.md`` into ``out_dir``; return the results.

    ``stem`` defaults to ``search_efficiency`` (``search_efficiency_quick`` when ``quick``).
    """
    from pymatgen.analysis.structure_matcher import StructureMatcher

    from ase_unimat.evaluation.reference import ReferenceRecord

    start = time.perf_counter()
    targets = held_out_targets(config)
    say(f"{len(targets)} targets: " + ", ".join(f"{t.formula} ({t.natoms})" for t in targets))
    overlap = default_overlap(config, targets)
    if overlap:
        say(f"note: {len(overlap)} of these targets are also default-run targets: {', '.join(overlap)}")
    sources, notes = build_sources(config, targets, say)
    if not sources:
        raise RuntimeError(f"no seed source available: {notes}")
    jobs: list[tuple[str, Any]] = []
    made: dict[tuple[str, str], int] = {}
    target_notes: dict[str, list[str]] = {}
    for t in targets:
        reference_atoms = ReferenceRecord(t.material_id, "mp_20/test", t.counts, math.nan, t.cif).atoms()
        jobs.append((f"{t.material_id}/reference/0", reference_atoms))
        for name, source in sources.items():
            run_seed = config.run_seed + (1 if name == "mixed" else 0)
            try:
                seeds = make_seeds(source, t, config.n_seeds, run_seed)
            except Exception as err:  # noqa: BLE001 - NoSeedsForFormula and friends: unavailable here
                target_notes.setdefault(t.material_id, []).append(
                    f"{name} unavailable ({' '.join(str(err).split())[:120]})"
                )
                continue
            made[(t.material_id, name)] = len(seeds)
            jobs += [(f"{t.material_id}/{name}/{k}", seed.atoms) for k, seed in enumerate(seeds)]
    say(f"relaxing {len(jobs)} structures with {config.calculator} on {config.workers} workers")
    relaxations = relax_all(jobs, config, say)
    results = relaxations.results
    matcher = StructureMatcher()
    per_target = []
    for t in targets:
        reference = results[f"{t.material_id}/reference/0"]
        row: dict[str, Any] = {"material_id": t.material_id, "formula": t.formula, "natoms": t.natoms, "bin": t.bin,
                               "reference": {"status": reference.status, "reason": reference.reason,
                                             "energy_per_atom": reference.energy / t.natoms if reference.ok else None,
                                             "steps": reference.steps}, "sources": {}}  # fmt: skip
        if not reference.ok:
            target_notes.setdefault(t.material_id, []).append("reference relaxation failed")
        else:
            for name in sources:
                if (t.material_id, name) in made:
                    seed_results = [results[f"{t.material_id}/{name}/{k}"] for k in range(made[(t.material_id, name)])]
                    row["sources"][name] = score(seed_results, reference, matcher)
        per_target.append(row)
    used = [name for name in SOURCE_ORDER if name in sources]
    cache = relax_cache(config)
    result = {
        "quick": quick,
        "config": asdict(config),
        "energy_tolerance_ev_per_atom": ENERGY_TOLERANCE,
        "p_rule": "p_est = (hits + 0.5) / (N + 1); expected relaxations = 1 / p_est; censored when hits == 0",
        "source_notes": {name: notes.get(name, "ran") for name in SOURCE_ORDER if name in config.sources},
        "sources": used,
        "relaxations": {
            "jobs": len(jobs),
            "from_cache": relaxations.from_cache,
            "relaxed": relaxations.relaxed,
            "cache_dir": None if cache is None else str(cache.root),
        },
        "overlap_with_default_targets": overlap,
        "targets": [
            {
                "material_id": t.material_id,
                "formula": t.formula,
                "natoms": t.natoms,
                "bin": t.bin,
                "notes": target_notes.get(t.material_id, []),
            }
            for t in targets
        ],  # fmt: skip
        "bins": summarise(per_target, used, config.bins),
        "per_target": per_target,
        "wall_s": time.perf_counter() - start,
    }
    stem = stem or default_stem(quick)
    out_dir.mkdir(parents=True, exist_ok=True)
    plot(per_target, used, config.bins, out_dir / f"{stem}.png")
    (out_dir / f"{stem}.md").write_text(markdown(result, f"{stem}.png"))
    say((out_dir / f"{stem}.md").read_text())
    return result


def default_stem(quick: bool) -> str:
    """Output file stem of a default or quick run (what ``python -m bench`` names its JSON too)."""
    return "search_efficiency_quick" if quick else "search_efficiency"


def run(*, quick: bool, out_dir: Path) -> dict[str, Any]:
    """Runner entry point: the default configuration (about an hour) or ``--quick`` (minutes)."""
    config = QUICK if quick else DEFAULT
    return run_search_efficiency(config, out_dir=Path(out_dir), quick=quick)


# ---------------------------------------------------------------------------------- command line

EXAMPLES = """
\b
Examples:
  python -m bench.search_efficiency --quick --sources random --bins 1-6 --n-seeds 2 --out /tmp/se
  python -m bench.search_efficiency --sources unimat-template --stem search_efficiency_unimat_template
  python -m bench.search_efficiency --sources unimat,random --model models/unimat-mp20 --per-bin 2 --n-seeds 20
  python -m bench.search_efficiency --bins 7-12,13-20 --no-cache --out /tmp/se_fresh
  python -m bench.search_efficiency --selection-seed 2 --sources unimat-template,template,random --stem tuning
"""


def write_record(result: Mapping[str, Any], path: Path, *, quick: bool, started: dt.datetime, wall_s: float) -> None:
    """Write ``result`` as ``python -m bench`` would (with time, machine and git commit) to ``path``."""
    from bench import git_commit, json_safe, machine_info

    record = {
        "benchmark": "search_efficiency",
        "quick": bool(quick),
        "started_utc": started.isoformat(timespec="seconds"),
        "wall_s": round(wall_s, 2),
        "machine": machine_info(),
        "git_commit": git_commit(),
        "result": result,
    }
    path.write_text(json.dumps(json_safe(record), indent=1) + "\n")


@click.command(epilog=EXAMPLES, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--quick", is_flag=True, help="Start from the quick configuration (1 target per bin, 3 seeds).")
@click.option(
    "--sources",
    type=CommaList(SOURCE_ORDER),
    default=None,
    help=f"Seed sources to run, comma-separated from {', '.join(SOURCE_ORDER)} [default: {','.join(DEFAULT.sources)}].",
)
@click.option(
    "--per-bin",
    type=click.IntRange(min=1),
    default=None,
    help=f"Held-out targets per size bin [default: {DEFAULT.per_bin}, {QUICK.per_bin} with --quick].",
)
@click.option(
    "--n-seeds",
    type=click.IntRange(min=1),
    default=None,
    help=f"Seeds per target and source [default: {DEFAULT.n_seeds}, {QUICK.n_seeds} with --quick].",
)
@click.option(
    "--model",
    type=str,
    default=None,
    help="UniMat model: a checkpoint (.pt), a model folder or a name in models/ [default: the bundled model].",
)
@click.option(
    "--bins",
    type=CommaList(tuple(BINS)),
    default=None,
    help=f"Size bins (atoms per cell), comma-separated from {', '.join(BINS)} [default: all].",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=RESULTS_DIR,
    show_default=True,
    help="Folder for <stem>.json, .md and .png.",
)
@click.option(
    "--stem",
    type=str,
    default=None,
    help="Output file name without extension [default: search_efficiency, search_efficiency_quick with "
    "--quick]; name a variant to keep the default results.",
)
@click.option(
    "--selection-seed",
    type=click.IntRange(min=0),
    default=None,
    help=f"Seed of the target draw [default: {DEFAULT.selection_seed}]; another seed gives other held-out "
    "targets, e.g. a tuning set kept apart from the default run's (overlaps are reported).",
)
@click.option(
    "--unimat-option",
    "unimat_option",
    type=KeyValue(UNIMAT_OPTIONS),
    multiple=True,
    help="KEY=VALUE option of the UniMat sources, repeatable (a variant, e.g. first_pass=volume, "
    "sampler=ddim, strength=0.2,0.5); keys: " + ", ".join(UNIMAT_OPTIONS) + ".",
)
@click.option(
    "--template-option",
    "template_option",
    type=KeyValue(TEMPLATE_OPTIONS),
    multiple=True,
    help="KEY=VALUE option of the template and unimat-template sources' templates, repeatable (a variant, "
    "e.g. ordered=true); keys: " + ", ".join(TEMPLATE_OPTIONS) + ".",
)
@click.option("--no-cache", is_flag=True, help=f"Relax everything again; neither read nor write {DEFAULT_CACHE_DIR}.")
def main(quick: bool, sources: tuple[str, ...] | None, per_bin: int | None, n_seeds: int | None, model: str | None,
         bins: tuple[str, ...] | None, out: Path, stem: str | None, selection_seed: int | None,
         unimat_option: tuple[tuple[str, Any], ...], template_option: tuple[tuple[str, Any], ...],
         no_cache: bool) -> None:  # fmt: skip
    """Relaxations needed to find held-out mp_20 ground states, per seed source (CHGNet, 2 workers).

    Finished relaxations are cached (bench/.cache/search_efficiency), so a killed run resumes and a
    run with an extra source relaxes only that source's seeds. Writes <stem>.json, .md and .png to --out.
    """
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    if stem is not None and (not stem or any(c in stem for c in "/\\") or stem.startswith(".")):
        raise click.ClickException(f"--stem {stem!r} must be a plain file name without extension")
    if model is not None:
        from ase_unimat.model.bundled import resolve_model_path

        try:
            resolve_model_path(model)
        except FileNotFoundError as err:
            raise click.ClickException(str(err)) from None
    overrides = {"sources": sources, "per_bin": per_bin, "n_seeds": n_seeds, "model": model, "bins": bins,
                 "selection_seed": selection_seed, "unimat_options": unimat_option or None,
                 "template_options": template_option or None,
                 "cache_dir": "" if no_cache else None}  # fmt: skip
    config = replace(QUICK if quick else DEFAULT, **{k: v for k, v in overrides.items() if v is not None})
    stem = stem or default_stem(quick)
    started = dt.datetime.now(dt.UTC)
    start = time.perf_counter()
    try:
        result = run_search_efficiency(config, out_dir=out, quick=quick, stem=stem, say=click.echo)
    except RuntimeError as err:  # no source could be built
        raise click.ClickException(" ".join(str(err).split())) from None
    path = out / f"{stem}.json"
    write_record(result, path, quick=quick, started=started, wall_s=time.perf_counter() - start)
    click.echo(f"search_efficiency: {time.perf_counter() - start:.1f} s, wrote {path}")


if __name__ == "__main__":
    main()
