"""Sampling throughput (structures/s) against the number of steps, for <= 20-atom cells (JSON to bench/results/).

Run:  python -m bench sampling [--quick]
(or from Python: ``run(quick=False, out_dir=..., model="models/unimat-mp20", device="cuda")``)

Compositions are those of the validation set (2-20 atoms), cycled to fill the batches; the
structures are decoded to Atoms, so the time is what ``generate()`` costs per structure. Without
--model a freshly initialised network of the "cpu" config is timed (same cost as a trained one).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

VAL = "/work/data/mp20_val.h5"


def val_compositions(path: str, count: int):
    """(count, 9, 18) compositions of the validation file, cycled."""
    import torch

    from ase_unimat.training.dataset import UniMatDataset

    dataset = UniMatDataset(path, in_memory=True)
    grids = [dataset[i]["composition"] for i in range(len(dataset))]
    return torch.stack([grids[i % len(grids)] for i in range(count)])


def time_sampling(model, compositions, *, sampler: str, steps: int, batch_size: int, device) -> dict:
    """Structures per second of sampling + decoding ``compositions`` in batches."""
    import torch

    from ase_unimat.model.sampler import get_sampler, to_atoms

    sample = get_sampler(sampler)
    start = time.perf_counter()
    n = 0
    for first in range(0, len(compositions), batch_size):
        chunk = compositions[first : first + batch_size].to(device)
        seeds = list(range(first, first + len(chunk)))
        coords, lattice = sample(model, chunk, seeds=seeds, steps=steps, guidance=1.0, device=device)
        n += len(to_atoms(coords, lattice))
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {"sampler": sampler, "steps": steps, "batch_size": batch_size, "structures": n,
            "seconds": round(seconds, 3), "structures_per_s": round(n / seconds, 1)}


def run(*, quick: bool, out_dir: Path, model: str | None = None, config: str = "cpu", val: str = VAL,
        threads: int = 1, device: str = "cpu", batch_size: int = 64) -> dict:
    """Sampling throughput (structures/s) against steps for <= 20-atom cells, both samplers."""
    import torch

    from ase_unimat.model.config import named_config
    from ase_unimat.model.diffusion import build_model

    torch.set_num_threads(threads)
    dev = torch.device(device)
    if model:
        from ase_unimat.generation import load_model

        net = load_model(model, device=device)
    else:
        torch.manual_seed(0)
        net = build_model(named_config(config)).to(dev).eval()
    count = 64 if quick else 128
    compositions = val_compositions(val, count)
    time_sampling(net, compositions[:8], sampler="ddim", steps=2, batch_size=batch_size, device=dev)  # warm-up
    cases = []
    for steps in (10, 50) if quick else (10, 20, 50, 100):
        for sampler in ("ddim", "ancestral"):
            cases.append(time_sampling(net, compositions, sampler=sampler, steps=steps, batch_size=batch_size,
                                       device=dev))
    natoms = compositions.sum(dim=(1, 2))
    return {
        "benchmark": "sampling + decoding to Atoms, compositions of mp_20/val",
        "model": model or f"untrained '{config}' config",
        "network": net.config.model.network,
        "device": str(dev),
        "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
        "threads": threads,
        "load_average_at_end": os.getloadavg(),
        "torch": torch.__version__,
        "atoms_per_cell": {"mean": float(natoms.float().mean()), "max": int(natoms.max())},
        "note": "ancestral uses one Langevin corrector step per step, i.e. 2 network calls per step",
        "cases": cases,
        "target_structures_per_s_cpu": 20,
    }
