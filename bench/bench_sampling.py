"""Sampling throughput (structures/s) of the default sampler before and after issue 14, <= 20-atom cells (JSON).

Run:  nice -n 5 python -m bench sampling [--quick]
      (models: the shipped models/unimat-mp20 plus UNIMAT_SAMPLING_MODELS=a.pt,b.pt; torch threads:
      UNIMAT_SAMPLING_THREADS=1,2 (the default); from Python
      ``run(quick=False, out_dir=..., models=["unimat-mp20", "/tmp/gen_model/model.pt"])``)

128 mp_20/val compositions (2-20 atoms, cycled) are sampled in one batch, as ``generate()`` batches
all requested samples, and decoded to Atoms. Each setting is timed with 1 and with 2 torch threads.
Beside wall-clock structures/s the JSON gives structures per CPU-second of the process: on a
machine shared with other jobs (``load_average``) the wall clock undercounts what the cores
deliver, and the CPU-time rate with 1 thread is what one idle core gives.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

VAL = "/work/data/mp20_val.h5"
BEFORE = {"label": "before: ancestral 50 steps + 1 corrector (100 network calls)", "sampler": "ancestral",
          "steps": 50, "corrector_steps": 1}  # fmt: skip


def after_setting() -> dict:
    """The default sampler of ``generate()`` now (sampler, steps, corrector steps)."""
    from ase_unimat.generation import DEFAULT_SAMPLER, DEFAULT_STEPS

    calls = DEFAULT_STEPS * (1 + int(DEFAULT_SAMPLER == "ancestral"))
    return {"label": f"after: {DEFAULT_SAMPLER} {DEFAULT_STEPS} steps ({calls} network calls)",
            "sampler": DEFAULT_SAMPLER, "steps": DEFAULT_STEPS, "corrector_steps": 1}  # fmt: skip


def val_compositions(path: str, count: int):
    """(count, 9, 18) compositions of the validation file, cycled."""
    import torch

    from ase_unimat.training.dataset import UniMatDataset

    dataset = UniMatDataset(path, in_memory=True)
    grids = [dataset[i]["composition"] for i in range(len(dataset))]
    return torch.stack([grids[i % len(grids)] for i in range(count)])


def time_sampling(model, compositions, *, sampler: str, steps: int, batch_size: int, device) -> dict:
    """Structures per second (wall and per CPU-second) of sampling + decoding ``compositions`` in batches."""
    import torch

    from ase_unimat.model.sampler import get_sampler, to_atoms

    sample = get_sampler(sampler)
    start, cpu = time.perf_counter(), time.process_time()
    n = 0
    for first in range(0, len(compositions), batch_size):
        chunk = compositions[first : first + batch_size].to(device)
        seeds = list(range(first, first + len(chunk)))
        coords, lattice = sample(model, chunk, seeds=seeds, steps=steps, guidance=1.0, device=device)
        n += len(to_atoms(coords, lattice))
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    return {"sampler": sampler, "steps": steps, "batch_size": batch_size, "structures": n,
            "seconds": round(seconds, 3), "structures_per_s": round(n / seconds, 1),
            "structures_per_cpu_s": round(n / cpu_seconds, 1)}  # fmt: skip


def run(*, quick: bool, out_dir: Path, models=None, threads=None, val: str = VAL, device: str = "cpu",
        batch_size: int = 256) -> dict:  # fmt: skip
    """Throughput of the default sampler before / after on the shipped (and given) models, 1 and 2 threads."""
    import torch

    from ase_unimat.generation import load_model

    models = models or ["unimat-mp20", *filter(None, os.environ.get("UNIMAT_SAMPLING_MODELS", "").split(","))]
    threads = threads or [int(t) for t in os.environ.get("UNIMAT_SAMPLING_THREADS", "1,2").split(",")]
    dev = torch.device(device)
    compositions = val_compositions(val, 64 if quick else 128)
    natoms = compositions.sum(dim=(1, 2))
    results = []
    for name in models:
        net = load_model(name, device=device)
        default_corrector = net.config.diffusion.corrector_steps
        for n_threads in threads:
            torch.set_num_threads(n_threads)
            time_sampling(net, compositions[:8], sampler="ddim", steps=2, batch_size=batch_size, device=dev)
            for setting in (BEFORE, after_setting()):
                net.config.diffusion.corrector_steps = setting["corrector_steps"]
                case = time_sampling(net, compositions, sampler=setting["sampler"], steps=setting["steps"],
                                     batch_size=batch_size, device=dev)  # fmt: skip
                results.append({"model": str(name), "parameters": sum(p.numel() for p in net.parameters()),
                                "threads": n_threads, "setting": setting["label"], **case,
                                "load_average": os.getloadavg()})  # fmt: skip
                print(results[-1], flush=True)
        net.config.diffusion.corrector_steps = default_corrector
    return {
        "benchmark": "sampling + decoding to Atoms, compositions of mp_20/val, all in one batch",
        "command": "nice -n 5 python -m bench sampling" + (" --quick" if quick else "")
        + f"  (UNIMAT_SAMPLING_MODELS={','.join(map(str, models[1:]))} UNIMAT_SAMPLING_THREADS={','.join(map(str, threads))})",
        "device": str(dev),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "atoms_per_cell": {"mean": float(natoms.float().mean()), "max": int(natoms.max())},
        "cases": results,
        "target_structures_per_s_cpu": 20,
    }  # fmt: skip
