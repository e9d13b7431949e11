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

The parts live in ``bench/_search_efficiency_config.py`` (settings, sources, the hit tolerance),
``_search_efficiency_targets.py``, ``_search_efficiency_seeds.py``, ``_search_efficiency_relax.py``
(relaxations and their cache), ``_search_efficiency_scoring.py`` and ``_search_efficiency_report.py``
(markdown, plot); this module runs them and holds the command line.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import click

from ase_unimat.core.messages import one_line
from bench._cli_types import CommaList, key_value_option
from bench._search_efficiency_config import (
    BINS,
    DEFAULT,
    DEFAULT_CACHE_DIR,
    ENERGY_TOLERANCE,
    QUICK,
    RESULTS_DIR,
    SOURCE_ORDER,
    TEMPLATE_OPTIONS,
    UNIMAT_OPTIONS,
    BenchConfig,
)
from bench._search_efficiency_relax import relax_all, relax_cache
from bench._search_efficiency_report import markdown, plot
from bench._search_efficiency_scoring import score, summarise
from bench._search_efficiency_seeds import build_sources, make_seeds
from bench._search_efficiency_targets import default_overlap, held_out_targets

# ------------------------------------------------------------------------------------------- the run


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
                    f"{name} unavailable ({one_line(err, limit=120, empty='')})"
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
@key_value_option(
    "--unimat-option",
    UNIMAT_OPTIONS,
    "KEY=VALUE option of the UniMat sources, repeatable (a variant, e.g. first_pass=volume, sampler=ddim, "
    "strength=0.2,0.5)",
)
@key_value_option(
    "--template-option",
    TEMPLATE_OPTIONS,
    "KEY=VALUE option of the template and unimat-template sources' templates, repeatable (a variant, "
    "e.g. ordered=true)",
)
@click.option(
    "--template-reference",
    type=str,
    default=None,
    help="Templates of the template-based sources: 'model' (the reference.h5 shipped beside --model) or "
    "an HDF5 file / CIF folder [default: the default model's training set, mp_20/train + extra MP].",
)
@click.option("--no-cache", is_flag=True, help=f"Relax everything again; neither read nor write {DEFAULT_CACHE_DIR}.")
def main(quick: bool, sources: tuple[str, ...] | None, per_bin: int | None, n_seeds: int | None, model: str | None,
         bins: tuple[str, ...] | None, out: Path, stem: str | None, selection_seed: int | None,
         unimat_option: tuple[tuple[str, Any], ...], template_option: tuple[tuple[str, Any], ...],
         template_reference: str | None, no_cache: bool) -> None:  # fmt: skip
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
                 "template_options": template_option or None, "template_reference": template_reference,
                 "cache_dir": "" if no_cache else None}  # fmt: skip
    config = replace(QUICK if quick else DEFAULT, **{k: v for k, v in overrides.items() if v is not None})
    stem = stem or default_stem(quick)
    started = dt.datetime.now(dt.UTC)
    start = time.perf_counter()
    try:
        result = run_search_efficiency(config, out_dir=out, quick=quick, stem=stem, say=click.echo)
    except RuntimeError as err:  # no source could be built
        raise click.ClickException(one_line(err, empty="")) from None
    path = out / f"{stem}.json"
    write_record(result, path, quick=quick, started=started, wall_s=time.perf_counter() - start)
    click.echo(f"search_efficiency: {time.perf_counter() - start:.1f} s, wrote {path}")


if __name__ == "__main__":
    main()
