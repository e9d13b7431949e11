"""Benchmark: UniMatDataset read speed (samples/s), in-memory and lazy, per item and per batch.

Usage: python bench/bench_dataset.py [DATASET.h5] [--seconds 2]
Writes bench/results/bench_dataset.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from ase_unimat.dataset import UniMatDataset  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def rate(step, seconds: float) -> float:
    """Samples per second of ``step()`` (which returns how many samples it read) run for ``seconds``."""
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        done += step()
    return done / (time.perf_counter() - start)


def measure(path: str, *, in_memory: bool, seconds: float) -> dict[str, float]:
    dataset = UniMatDataset(path, in_memory=in_memory)
    rng = np.random.default_rng(0)
    n = len(dataset)

    def one_item() -> int:
        dataset[int(rng.integers(n))]
        return 1

    def one_batch() -> int:
        dataset.__getitems__(rng.integers(n, size=64).tolist())
        return 64

    loader = torch.utils.data.DataLoader(
        dataset, batch_size=64, shuffle=True, num_workers=0, generator=torch.Generator().manual_seed(0)
    )
    batches = iter(loader)

    def loader_batch() -> int:
        nonlocal batches
        try:
            batch = next(batches)
        except StopIteration:
            batches = iter(loader)
            batch = next(batches)
        return len(batch["natoms"])

    batch_loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=None,
        sampler=torch.utils.data.BatchSampler(
            torch.utils.data.RandomSampler(dataset, generator=torch.Generator().manual_seed(0)), 64, False
        ),
    )
    batch_batches = iter(batch_loader)

    def batch_sampler_batch() -> int:
        nonlocal batch_batches
        try:
            batch = next(batch_batches)
        except StopIteration:
            batch_batches = iter(batch_loader)
            batch = next(batch_batches)
        return len(batch["natoms"])

    augmented = UniMatDataset(path, in_memory=in_memory, augment=True)

    def augmented_batch() -> int:
        augmented.__getitems__(rng.integers(n, size=64).tolist())
        return 64

    return {
        "random_item_getitem": rate(one_item, seconds),
        "random_batch64_getitems": rate(one_batch, seconds),
        "dataloader_batch64_shuffle_workers0": rate(loader_batch, seconds),
        "dataloader_batchsampler64_workers0": rate(batch_sampler_batch, seconds),
        "random_batch64_getitems_augment": rate(augmented_batch, seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", nargs="?", default="/work/data/mp20_train.h5")
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    result = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "load_average_1min": os.getloadavg()[0],
        },
        "dataset": args.dataset,
        "n_structures": len(UniMatDataset(args.dataset)),
        "samples_per_s": {
            "in_memory": measure(args.dataset, in_memory=True, seconds=args.seconds),
            "lazy": measure(args.dataset, in_memory=False, seconds=args.seconds),
        },
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_dataset.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["samples_per_s"], indent=2))


if __name__ == "__main__":
    main()
