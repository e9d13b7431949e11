"""Trainer step time and samples/s per batch size on CPU with the cpu config, against a bare optimiser step.

Run:  python -m bench train [--quick]      (JSON to bench/results/train[_quick].json)

For each batch size, ``ase_unimat.training.trainer.train`` runs the shipped ``cpu`` config on
``/work/data/mp20_train.h5`` for a few steps (validation off, one checkpoint at the end) and the
step time is the median gap between consecutive ``log.jsonl`` records (data loading, forward,
backward, clipping, AdamW, EMA; the first step is dropped). The bare step is ``model.loss`` +
backward + AdamW on a prepared batch, so the difference is the trainer's overhead. Also timed: one
atomic checkpoint write and its size. The CPU cores here are shared: the load average is recorded.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path

DATA = os.environ.get("UNIMAT_BENCH_TRAIN_DATA", "/work/data/mp20_train.h5")
EPOCH_STRUCTURES = 8000  # the target: an epoch of 8k structures in <= 60 s


def _config(batch_size: int, steps: int):
    from ase_unimat.model.config import from_dict, named_config, to_dict

    data = to_dict(named_config("cpu"))
    data["train"].update(
        train_data=DATA, val_data="", batch_size=batch_size, total_steps=steps, warmup_steps=1, log_every=1,
        val_every=0, checkpoint_every=steps, num_workers=0, device="cpu",
    )  # fmt: skip
    return from_dict(data)


def trainer_step(batch_size: int, steps: int, out_dir: Path) -> dict:
    """Median seconds per step of the full training loop, from the log's wall times."""
    from ase_unimat.training.trainer import train

    train(_config(batch_size, steps), out_dir=out_dir, progress=False, resume=False)
    walls = [json.loads(line)["wall_time"] for line in (out_dir / "log.jsonl").read_text().splitlines()]
    gaps = [b - a for a, b in zip(walls, walls[1:], strict=False)]
    step = statistics.median(gaps)
    return {"seconds_per_step": round(step, 4), "samples_per_s": round(batch_size / step, 1), "steps_timed": len(gaps)}


def bare_step(batch_size: int, steps: int) -> dict:
    """Median seconds of ``model.loss`` + backward + AdamW on prepared batches (no data, EMA, logging)."""
    import numpy as np
    import torch

    from ase_unimat.model.diffusion import build_model
    from ase_unimat.training.dataset import UniMatDataset

    dataset = UniMatDataset(DATA, in_memory=True)
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    model = build_model(_config(batch_size, steps)).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    times = []
    for _ in range(steps):
        items = dataset.__getitems__(rng.choice(len(dataset), batch_size, replace=False).tolist())
        batch = torch.utils.data.default_collate(items)
        start = time.perf_counter()
        loss, _ = model.loss(batch, generator=generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    step = statistics.median(times[1:])
    return {"seconds_per_step": round(step, 4), "samples_per_s": round(batch_size / step, 1), "steps_timed": steps - 1}


def overhead_parts(batch_size: int, repeats: int = 20) -> dict:
    """Median seconds of the trainer's own per-step work: one batch read + collate, EMA update, grad clip."""
    import torch

    from ase_unimat.model.diffusion import build_model
    from ase_unimat.training.data_order import EpochKeyedDataset
    from ase_unimat.training.dataset import UniMatDataset
    from ase_unimat.training.ema import EMA

    data = EpochKeyedDataset(UniMatDataset(DATA, in_memory=True), seed=0, augment=True)
    model = build_model(_config(batch_size, 1))
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    ema = EMA(model, decay=0.999)

    def median_time(action) -> float:
        times = []
        for i in range(repeats):
            start = time.perf_counter()
            action(i)
            times.append(time.perf_counter() - start)
        return round(statistics.median(times), 5)

    return {
        "batch_size": batch_size,
        "parameters": sum(p.numel() for p in model.parameters()),
        "data_s": median_time(
            lambda i: torch.utils.data.default_collate(
                data.__getitems__([(0, j) for j in range(i * batch_size, (i + 1) * batch_size)])
            )
        ),
        "ema_update_s": median_time(lambda i: ema.update(model)),
        "grad_clip_s": median_time(lambda i: torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)),
    }


def checkpoint_write(out_dir: Path) -> dict:
    """Seconds and bytes of one atomic checkpoint write (the last one the trainer wrote)."""
    from ase_unimat.model.checkpoint import LAST_NAME, atomic_save, load_checkpoint

    state = load_checkpoint(out_dir / LAST_NAME)
    start = time.perf_counter()
    path = atomic_save(state, out_dir / "again.pt")
    return {"seconds": round(time.perf_counter() - start, 4), "megabytes": round(path.stat().st_size / 2**20, 2)}


def run(*, quick: bool, out_dir: Path) -> dict:
    """Trainer step time per batch size on CPU (cpu config) vs a bare optimiser step."""
    import torch

    batch_sizes = (16, 64) if quick else (16, 32, 64, 128)
    steps = 4 if quick else 6
    load_before = os.getloadavg()
    cases = []
    with tempfile.TemporaryDirectory() as tmp:
        for batch_size in batch_sizes:
            run_dir = Path(tmp) / f"b{batch_size}"
            full = trainer_step(batch_size, steps, run_dir)
            bare = bare_step(batch_size, steps)
            cases.append({
                "batch_size": batch_size,
                "trainer": full,
                "bare_step": bare,
                "trainer_overhead": round(full["seconds_per_step"] / bare["seconds_per_step"] - 1, 3),
                "epoch_8k_s": round(EPOCH_STRUCTURES / full["samples_per_s"], 1),
            })  # fmt: skip
        ckpt = checkpoint_write(Path(tmp) / f"b{batch_sizes[-1]}")
    parts = overhead_parts(64)
    return {
        "command": "python -m bench train" + (" --quick" if quick else ""),
        "data": DATA,
        "config": "models/configs/cpu.toml (validation off)",
        "device": "cpu",
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "cases": cases,
        "checkpoint_write": ckpt,
        "trainer_overhead_parts": parts,
        "gpu": "not measured: no GPU in this session",
    }
