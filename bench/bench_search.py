"""Benchmark the search loop: overhead per seed against bare ASE, and the speed-up of 2 workers.

1. **Overhead.** The same random seeds are relaxed (a) by a bare ASE loop
   (``FIRE(FrechetCellFilter(atoms))`` with EMT) and (b) by ``Search.irun`` with a run directory
   (checks, space group, atomic ``.res`` + JSON writes). Repeats alternate the two; the minimum
   of each is compared. Target: search / bare - 1 <= 5 %. Ranking (run once at the end) is reported
   apart.
2. **Speed-up.** ``Search.run`` wall time with ``workers=1`` (in process) and ``workers=2``
   (process pool, one BLAS/torch thread per worker; pool start and CHGNet loading included), with
   EMT and with CHGNet. Target: >= 1.7x on 2 cores.

Threads: ``OPENBLAS_NUM_THREADS=1`` is set before numpy loads (STYLE.md trap); CHGNet runs with one
torch thread per worker, the in-process ``workers=1`` run included (``get_calculator`` default).

    OPENBLAS_NUM_THREADS=1 python bench/bench_search.py --out bench/results/search.json
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from ase_unimat.search.random_seeds import RandomSeedSource  # noqa: E402
from ase_unimat.search.search import Search  # noqa: E402


@dataclass
class FixedSeeds:
    """A seed source returning seeds made beforehand (so seed making is outside the timings)."""

    seeds: list[Any]
    name: str = "random"

    def make(self, counts, indices, *, run_seed):
        return [self.seeds[k] for k in indices]


def make_seeds(formula_counts: dict[str, int], n: int, run_seed: int) -> list[Any]:
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


def overhead(args: argparse.Namespace) -> dict[str, Any]:
    """Alternating repeats of bare ASE and Search.irun on the same seeds; minima compared."""
    counts = {"Cu": 4, "Au": 4}
    seeds = make_seeds(counts, args.overhead_seeds, args.seed)
    bare, bare_cpu, loop, loop_cpu, ranking, steps = [], [], [], [], [], 0
    for _ in range(args.repeats):
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


def speedup(calculator: str, formula: str, n: int, max_steps: int, args: argparse.Namespace) -> dict[str, Any]:
    times = {}
    for workers in (1, 2):
        with tempfile.TemporaryDirectory() as folder:
            search = Search(
                formula,
                calculator=calculator,
                seeds="random",
                n=n,
                formula_units=2,
                fmax=0.05,
                max_steps=max_steps,
                workers=workers,
                out=folder,
                run_seed=args.seed,
            )
            start = time.perf_counter()
            ranking = search.run()
            times[workers] = time.perf_counter() - start
            print(f"{calculator} workers={workers}: {times[workers]:.1f} s", flush=True)
            steps = sum(r.steps for r in search.results)
            failed = len(ranking.failed)
    return {
        "calculator": calculator,
        "formula": f"{formula} x2",
        "seeds": n,
        "max_steps": max_steps,
        "optimizer_steps": steps,
        "failed": failed,
        "workers1_s": times[1],
        "workers2_s": times[2],
        "speedup": times[1] / times[2],
        "target": 1.7,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results/search.json"))
    parser.add_argument("--overhead-seeds", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--emt-seeds", type=int, default=24)
    parser.add_argument("--chgnet-seeds", type=int, default=8)
    parser.add_argument("--skip-chgnet", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    report: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_before": os.getloadavg()},
        "threads": {
            "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"),
            "torch_per_worker": 1,
        },
    }
    report["overhead"] = overhead(args)
    print(json.dumps(report["overhead"], indent=1))
    report["speedup"] = [speedup("emt", "CuAu", args.emt_seeds, 300, args)]
    print(json.dumps(report["speedup"][-1], indent=1))
    if not args.skip_chgnet:
        report["speedup"].append(speedup("chgnet", "NaCl", args.chgnet_seeds, 80, args))
        print(json.dumps(report["speedup"][-1], indent=1))
    report["machine"]["load_after"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
