"""Training-step time and samples/s of the atom and dense networks at equal width (JSON to bench/results/).

Run:  python -m bench networks [--quick]   (1 torch thread by default: this 2-core machine is shared and
      oversubscribed, where 2 threads ran up to 20x slower than 1; pass threads=2 from Python on a quiet one)

Each case builds a model, draws real batches from the HDF5 dataset and times forward + backward +
AdamW step (median of a few steps after one warm-up step). The "cpu" config is timed at its own
width; the two networks are compared at equal width 64 (depth 4).
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

DATA = "/work/data/mp20_train.h5"


def load_batches(path: str, batch_size: int, count: int, *, seed: int = 0) -> list[dict]:
    """``count`` random batches of the trainer's batch contract from a UniMat HDF5 file."""
    import numpy as np
    import torch

    from ase_unimat.training.dataset import UniMatDataset

    dataset = UniMatDataset(path, in_memory=True)
    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(count):
        items = dataset.__getitems__(rng.choice(len(dataset), batch_size, replace=False).tolist())
        batches.append(
            {k: torch.stack([item[k] for item in items]) for k in ("coords", "lattice", "composition", "natoms")}
        )
    return batches


def with_network(base, network: str, **model):
    """A copy of config ``base`` with another network / model fields."""
    from ase_unimat.model.config import from_dict, to_dict

    data = to_dict(base)
    data["model"].update(network=network, **model)
    return from_dict(data)


def time_training(config, batches, *, device: str = "cpu") -> dict:
    """Median seconds per optimiser step over ``batches`` (the first one is a warm-up)."""
    import torch

    from ase_unimat.model.diffusion import build_model

    torch.manual_seed(0)
    model = build_model(config).to(device).train()
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-4)
    generator = torch.Generator(device=device).manual_seed(0)
    times = []
    for batch in batches:
        batch = {k: v.to(device) for k, v in batch.items()}
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        loss, _ = model.loss(batch, generator=generator)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    step = statistics.median(times[1:])
    size = len(batches[0]["coords"])
    return {
        "network": config.model.network,
        "width": config.model.width,
        "depth": config.model.depth,
        "parameters": sum(p.numel() for p in model.parameters()),
        "batch_size": size,
        "seconds_per_step": round(step, 4),
        "samples_per_s": round(size / step, 1),
        "steps_timed": len(times) - 1,
    }


def run(*, quick: bool, out_dir: Path, data: str = DATA, threads: int = 1, device: str = "cpu") -> dict:
    """Training step time and samples/s of the atom and dense networks at equal width (CPU)."""
    import torch

    from ase_unimat.model.config import named_config

    torch.set_num_threads(threads)
    cpu = named_config("cpu")
    cases = []
    for batch_size in (32,) if quick else (32, 64):
        batches = load_batches(data, batch_size, 4 if quick else 6)
        cases.append({"case": "cpu config", **time_training(cpu, batches, device=device)})
        width = 64
        cases.append({"case": "equal width", **time_training(with_network(cpu, "atoms", width=width), batches, device=device)})
        dense = with_network(cpu, "dense", width=width, heads=4)
        cases.append({"case": "equal width", **time_training(dense, batches[: 2 if quick else 3], device=device)})
    step_64 = [c for c in cases if c["case"] == "cpu config"][-1]
    epoch_8k = step_64["seconds_per_step"] * 8000 / step_64["batch_size"]
    return {
        "benchmark": "training step (forward + backward + AdamW) on real MP-20 batches",
        "device": device,
        "threads": threads,
        "load_average_at_end": os.getloadavg(),
        "torch": torch.__version__,
        "cases": cases,
        "cpu_config_epoch_8k_seconds": round(epoch_8k, 1),
        "target_epoch_8k_seconds": 60,
    }
