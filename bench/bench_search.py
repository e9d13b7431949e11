"""Benchmark the search loop: overhead per seed against bare ASE, and the speed-up of 2 workers.

1. **Overhead.** The same random seeds are relaxed (a) by a bare ASE loop
   (``FIRE(FrechetCellFilter(atoms))`` with EMT) and (b) by ``Search.irun`` with a run directory
   (checks, space group, atomic ``.res`` + JSON writes). Repeats alternate the two; the minimum
   of each is compared. Target: search / bare - 1 <= 5 %. Ranking (run once at the end) is reported
   apart.
2. **Speed-up.** ``Search.run`` wall time with ``workers=1`` (in process) and ``workers=2``
   (process pool, one BLAS/torch thread per worker; pool start and CHGNet loading included), with
   EMT (4-atom cells) and with CHGNet (8-atom cells). Target: >= 1.7x on 2 cores. The pool's fixed
   start (spawning, imports, one CHGNet load per worker: a few seconds) counts against it.

Threads: ``OPENBLAS_NUM_THREADS=1`` is set before numpy loads (STYLE.md trap); CHGNet runs with one
torch thread per worker, the in-process ``workers=1`` run included (``get_calculator`` default).

Run: ``python -m bench search`` (writes ``bench/results/search.json``; ``--quick`` for a short run).
Speed-ups need an otherwise idle machine: other jobs on the 2 cores erase them (``load_before``).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402


@dataclass
class FixedSeeds:
    """A seed source returning seeds made beforehand (so seed making is outside the timings)."""

    seeds: list[Any]
    name: str = "random"

    def make(self, counts, indices, *, run_seed):
        return [self.seeds[k] for k in indices]


def make_seeds(formula_counts: dict[str, int], n: int, run_seed: int) -> list[Any]:
    from ase_unimat.search.random_seeds import RandomSeedSource

    return RandomSeedSource().make(formula_counts, list(range(n)), run_seed=run_seed)


def bare_relax(seeds: list[Any], *, fmax: float, max_steps: int) -> tuple[float, float]:
    """(wall, CPU) seconds of a plain ASE loop over the seeds with EMT."""
    from ase.calculators.emt import EMT
    from ase.filters import FrechetCellFilter
    from ase.optimize import FIRE

    start, cpu = time.perf_counter(), time.process_time()
    calc = EMT()
    for seed in seeds:
        atoms = seed.atoms.copy()
        atoms.calc = calc
        FIRE(FrechetCellFilter(atoms), logfile=None).run(fmax=fmax, steps=max_steps)
        atoms.get_potential_energy()
    return time.perf_counter() - start, time.process_time() - cpu


def search_relax(
    seeds: list[Any], counts: dict[str, int], *, fmax: float, max_steps: int
) -> tuple[float, float, float, int]:
    """(wall and CPU seconds of Search.irun, seconds of ranking, total optimizer steps) over the same seeds."""
    from ase_unimat.search.search import Search

    with tempfile.TemporaryDirectory() as folder:
        search = Search(
            counts,
            calculator="emt",
            seeds=FixedSeeds(seeds),
            n=len(seeds),
            formula_units=1,
            fmax=fmax,
            max_steps=max_steps,
            out=folder,
        )
        start, cpu = time.perf_counter(), time.process_time()
        results = list(search.irun())
        loop, loop_cpu = time.perf_counter() - start, time.process_time() - cpu
        start = time.perf_counter()
        search.rank()
        ranking = time.perf_counter() - start
    return loop, loop_cpu, ranking, sum(r.steps for r in results)


def overhead(n_seeds: int, repeats: int, run_seed: int) -> dict[str, Any]:
    """Alternating repeats of bare ASE and Search.irun on the same seeds; minima compared."""
    counts = {"Cu": 4, "Au": 4}
    seeds = make_seeds(counts, n_seeds, run_seed)
    bare, bare_cpu, loop, loop_cpu, ranking, steps = [], [], [], [], [], 0
    for _ in range(repeats):
        wall, cpu = bare_relax(seeds, fmax=0.05, max_steps=300)
        bare.append(wall)
        bare_cpu.append(cpu)
        wall, cpu, rank_seconds, steps = search_relax(seeds, counts, fmax=0.05, max_steps=300)
        loop.append(wall)
        loop_cpu.append(cpu)
        ranking.append(rank_seconds)
    return {
        "formula": "Cu4Au4",
        "seeds": len(seeds),
        "optimizer_steps": steps,
        "bare_ase_wall_s": bare,
        "search_irun_wall_s": loop,
        "bare_ase_cpu_s": bare_cpu,
        "search_irun_cpu_s": loop_cpu,
        "ranking_wall_s": ranking,
        "overhead_fraction_wall": min(loop) / min(bare) - 1.0,
        "overhead_fraction_cpu": min(loop_cpu) / min(bare_cpu) - 1.0,
        "overhead_per_seed_cpu_ms": 1000 * (min(loop_cpu) - min(bare_cpu)) / len(seeds),
        "target_fraction": 0.05,
    }


def speedup(calculator: str, formula: str, units: int, n: int, max_steps: int, run_seed: int) -> dict[str, Any]:
    """Wall time of Search.run with 1 worker (in process) and with a 2-process pool."""
    from ase_unimat.search.search import Search

    times = {}
    for workers in (1, 2):
        with tempfile.TemporaryDirectory() as folder:
            search = Search(
                formula,
                calculator=calculator,
                seeds="random",
                n=n,
                formula_units=units,
                fmax=0.05,
                max_steps=max_steps,
                workers=workers,
                out=folder,
                run_seed=run_seed,
            )
            start = time.perf_counter()
            ranking = search.run()
            times[workers] = time.perf_counter() - start
            print(f"{calculator} workers={workers}: {times[workers]:.1f} s", flush=True)
            steps = sum(r.steps for r in search.results)
            failed = len(ranking.failed)
    return {
        "calculator": calculator,
        "formula": f"{formula} x{units}",
        "seeds": n,
        "max_steps": max_steps,
        "optimizer_steps": steps,
        "failed": failed,
        "workers1_s": times[1],
        "workers2_s": times[2],
        "speedup": times[1] / times[2],
        "target": 1.7,
    }


def run(*, quick: bool, out_dir: Path) -> dict:
    """Search loop overhead per seed vs bare ASE (EMT) and the speed-up of 2 workers (EMT, CHGNet)."""
    import importlib.util

    result: dict[str, Any] = {
        "load_before": os.getloadavg(),
        "threads": {"OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"), "torch_per_worker": 1},
        "overhead": overhead(6 if quick else 12, 2 if quick else 3, run_seed=0),
        "speedup": [speedup("emt", "CuAu", 2, 8 if quick else 24, 300, run_seed=0)],
    }
    if importlib.util.find_spec("chgnet") is not None:
        result["speedup"].append(speedup("chgnet", "NaCl", 4, 4 if quick else 12, 80, run_seed=0))
    result["load_after"] = os.getloadavg()
    return result


if __name__ == "__main__":  # prints only; `python -m bench search` writes bench/results/search.json
    import json

    print(json.dumps(run(quick=False, out_dir=Path(__file__).parent / "results"), indent=2))
