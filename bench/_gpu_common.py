"""The GPU benchmark's shared tools: device timing, bf16 autocast, training configs, memory counters, inputs.

It owns what several sections use: :func:`sync` (wait for queued device work before reading a
clock), :func:`autocast`, the dry-run network size (:func:`shrunk`) and :func:`training_config`
(a shipped TOML pointed at the shipped data), reading a run's ``log.jsonl``, :func:`attempt` (one
failed case becomes a row with its error), the CUDA peak-memory counter, and inputs drawn from the
shipped reference data (a training batch, compositions).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from bench._gpu_plan import DATA, REPO, Plan

# torch and ase_unimat are imported inside the functions: `python -m bench --list` imports bench.gpu and this module.


def sync(device: Any) -> None:
    """Wait for the device's queued work (a no-op on the CPU), so host clocks time it."""
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def autocast(device: Any, enabled: bool = True):
    """bf16 autocast on ``device`` (CUDA or CPU), or a no-op context."""
    import torch

    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16) if enabled else nullcontext()


def shrunk(model: dict[str, Any]) -> dict[str, Any]:
    """A ``[model]`` section at dry-run size: width 16, one block; network kind and flags kept."""
    return {**model, "width": 16, "pair_width": 16, "heads": 2, "depth": 1, "time_dim": 16, "n_rbf": 4, "fourier_k": 2}


def training_config(path: str | Path, *, plan: Plan, shrink: bool, **train: Any):
    """The TOML config at ``path`` with ``[train]`` pointed at the shipped data and set from ``train``."""
    from ase_unimat.model.config import from_dict, load_config, to_dict

    data = to_dict(load_config(REPO / path))
    if shrink:
        data["model"] = shrunk(data["model"])
    data["train"].update({"train_data": str(DATA), "val_data": "", "device": plan.device, **train})
    if plan.dry_run:
        data["train"]["num_workers"] = 0
    return from_dict(data)


def log_records(out_dir: Path) -> list[dict]:
    """The records of a training run's ``log.jsonl``."""
    return [json.loads(line) for line in (out_dir / "log.jsonl").read_text().splitlines() if line.strip()]


def attempt(labels: dict[str, Any], measure: Callable[[], dict]) -> dict:
    """``measure()``, or ``labels`` with the error where it fails (e.g. out of memory at the largest batch)."""
    try:
        return measure()
    except Exception as error:  # noqa: BLE001 - one failed case must not lose the section's other rows
        return {**labels, "error": f"{type(error).__name__}: {error}"}


def reset_peak_memory(device: str) -> None:
    """Free what earlier cases left cached and restart the peak-memory counter (CUDA only)."""
    import gc

    import torch

    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_memory_gib(device: str) -> float | None:
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if device == "cuda" else None


def reference_batch(size: int, device: Any) -> dict:
    """The first ``size`` structures of the shipped reference data as a training batch on ``device``."""
    import torch

    from ase_unimat.training.data_order import collate
    from ase_unimat.training.loaders import default_dataset, to_device

    dataset = default_dataset(str(DATA), in_memory=False)
    return to_device(collate([dataset[i] for i in range(size)]), torch.device(device))


def compositions(count: int):
    """(count, 9, 18) compositions of the shipped reference data, cycled."""
    import h5py
    import numpy as np
    import torch

    with h5py.File(DATA, "r") as h5:
        grids = h5["composition"][:]
    return torch.from_numpy(grids[np.arange(count) % len(grids)].astype(np.float32))
