"""UniMatDataset read speed (samples/s): in-memory and lazy, per item, per batch, through DataLoaders.

Reads /work/data/mp20_train.h5 if it exists, else converts MP-20 train into a temporary file first.
Run: ``python -m bench dataset``.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

SHARED_DATA = Path(os.environ.get("UNIMAT_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
DEFAULT_FILE = Path("/work/data/mp20_train.h5")


def rate(step, seconds: float) -> float:
    """Samples per second of ``step()`` (which returns how many samples it read) run for ``seconds``."""
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        done += step()
    return done / (time.perf_counter() - start)


def cycling(loader):
    """``next()`` over a DataLoader forever, returning the batch size."""
    batches = iter(loader)

    def step() -> int:
        nonlocal batches
        try:
            batch = next(batches)
        except StopIteration:
            batches = iter(loader)
            batch = next(batches)
        return len(batch["natoms"])

    return step


def measure(path: Path, *, in_memory: bool, seconds: float) -> dict[str, float]:
    """Samples/s of every read path of one dataset mode."""
    import numpy as np
    import torch

    from ase_unimat.training.dataset import UniMatDataset

    dataset = UniMatDataset(path, in_memory=in_memory)
    augmented = UniMatDataset(path, in_memory=in_memory, augment=True)
    rng = np.random.default_rng(0)
    n = len(dataset)
    shuffled = torch.utils.data.DataLoader(dataset, batch_size=64, shuffle=True,
                                           generator=torch.Generator().manual_seed(0))
    sampler = torch.utils.data.BatchSampler(
        torch.utils.data.RandomSampler(dataset, generator=torch.Generator().manual_seed(0)), 64, False)
    batched = torch.utils.data.DataLoader(dataset, sampler=sampler, batch_size=None)
    return {
        "random_item_getitem": rate(lambda: (dataset[int(rng.integers(n))], 1)[1], seconds),
        "random_batch64_getitems": rate(lambda: len(dataset.__getitems__(rng.integers(n, size=64).tolist())), seconds),
        "random_batch64_getitems_augment": rate(
            lambda: len(augmented.__getitems__(rng.integers(n, size=64).tolist())), seconds),
        "dataloader_batch64_shuffle_workers0": rate(cycling(shuffled), seconds),
        "dataloader_batchsampler64_workers0": rate(cycling(batched), seconds),
    }


def run(*, quick: bool, out_dir: Path) -> dict:
    """Read-speed table for in-memory and lazy mode."""
    import torch

    torch.set_num_threads(1)
    seconds = 0.5 if quick else 3.0
    with tempfile.TemporaryDirectory() as tmp:
        path = DEFAULT_FILE
        if not path.is_file():
            from ase_unimat.data.convert import convert

            path = Path(tmp) / "mp20_train.h5"
            convert([SHARED_DATA / "mp_20" / "train.csv.gz"], path)
        from ase_unimat.training.dataset import UniMatDataset

        return {
            "command": f"python -m bench dataset{' --quick' if quick else ''}", "dataset": str(path),
            "n_structures": len(UniMatDataset(path)), "seconds_per_measurement": seconds,
            "load_average_1min_at_start": os.getloadavg()[0],
            "samples_per_s": {"in_memory": measure(path, in_memory=True, seconds=seconds),
                              "lazy": measure(path, in_memory=False, seconds=seconds)},
        }
