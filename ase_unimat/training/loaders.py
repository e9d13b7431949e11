"""The trainer's data side: the datasets named in ``[train]``, their loaders, and batches on the device.

Owns the default dataset (``UniMatDataset`` over an HDF5 file, ``spacegroup`` where the file has
it), the training loader (an :class:`~ase_unimat.training.data_order.EpochBatchSampler` over the
concatenated training files, seeded augmentation) and the validation loader (a fixed, strided
share of the validation file per rank, no augmentation), the checks and reads the model needs from
the data (slot count, compositions for the prior), and moving a batch to the device.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

import h5py
import numpy as np
import torch
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from ase_unimat.model.config import TrainConfig
from ase_unimat.training.data_order import EpochBatchSampler, EpochKeyedDataset, collate
from ase_unimat.training.distributed import Processes


def default_dataset(path: str, *, in_memory: bool) -> Dataset:
    """``ase_unimat.training.dataset.UniMatDataset`` over ``path`` without its own augmentation (the trainer's is seeded).

    Carries the ``spacegroup`` property where the file has it (the condition of a
    ``spacegroup_condition`` network; a network without one ignores it).
    """
    from ase_unimat.training.dataset import UniMatDataset

    with h5py.File(path, "r") as h5:
        properties = ("spacegroup",) if "spacegroup" in h5.get("properties", {}) else ()
    return UniMatDataset(path, in_memory=in_memory, properties=properties)


def loader_kwargs(options: TrainConfig, procs: Processes) -> dict:
    """DataLoader arguments shared by the training and validation loaders (workers, pinning, collate)."""
    cuda = procs.device.type == "cuda"
    workers = options.num_workers
    if workers < 0:
        workers = min(4, (os.cpu_count() or 1) // procs.local_world_size) if cuda else 0
    return {
        "num_workers": workers,
        "pin_memory": cuda,
        "persistent_workers": workers > 0,
        "collate_fn": collate,
        # a private generator: creating an iterator must not draw from the global torch RNG
        "generator": torch.Generator().manual_seed(options.seed),
    }


def train_loader(
    make_dataset: Callable[..., Dataset], options: TrainConfig, procs: Processes
) -> tuple[DataLoader, EpochBatchSampler, Dataset]:
    """The training loader, its resumable sampler and the (concatenated) dataset of ``options.train_files``."""
    parts = [make_dataset(path, in_memory=options.in_memory) for path in options.train_files]
    base = parts[0] if len(parts) == 1 else ConcatDataset(parts)
    sampler = EpochBatchSampler(
        len(base),
        batch_size=options.batch_size,
        seed=options.seed,
        rank=procs.rank,
        world_size=procs.world_size,
    )
    keyed = EpochKeyedDataset(base, seed=options.seed, augment=options.permute_slots)
    return DataLoader(keyed, batch_sampler=sampler, **loader_kwargs(options, procs)), sampler, base


def val_loader(make_dataset: Callable[..., Dataset], options: TrainConfig, procs: Processes) -> DataLoader | None:
    """The validation loader (every ``world_size``-th item from ``rank``, at most ``val_batches``), or None."""
    if not options.val_data or not options.val_every:
        return None
    base = make_dataset(options.val_data, in_memory=options.in_memory)
    keys = [(0, index) for index in range(procs.rank, len(base), procs.world_size)]
    if options.val_batches:
        keys = keys[: options.val_batches * options.batch_size]
    keyed = EpochKeyedDataset(base, seed=options.seed, augment=False)
    return DataLoader(keyed, sampler=keys, batch_size=options.batch_size, **loader_kwargs(options, procs))


def dataset_compositions(dataset: Dataset) -> torch.Tensor:
    """(N, 9, 18) atom counts of every item of ``dataset`` (read from the HDF5 file when it has one)."""
    if isinstance(dataset, ConcatDataset):
        return torch.cat([dataset_compositions(part) for part in dataset.datasets])
    path = getattr(dataset, "path", None)
    if path is not None and str(path).endswith((".h5", ".hdf5")):
        with h5py.File(path, "r") as h5:
            if "composition" in h5:
                return torch.from_numpy(h5["composition"][: len(dataset)].astype(np.int64))
    return torch.stack([torch.as_tensor(dataset[i]["composition"]) for i in range(len(dataset))])


def check_slots(model: nn.Module, dataset: Dataset) -> None:
    """Raise ``ValueError`` when the data's L differs from the model's ``n_slots``."""
    parts = dataset.datasets if isinstance(dataset, ConcatDataset) else [dataset]
    want = getattr(model, "n_slots", None)
    for part in parts:
        have = getattr(part, "n_slots", None)
        if want is not None and have is not None and int(have) != int(want):
            raise ValueError(f"{getattr(part, 'path', 'the data')} has L = {have} slots but the model has {want}")


def to_device(batch: Mapping, device: torch.device) -> dict:
    """``batch`` with every tensor moved to ``device`` (non-blocking; other values as they are)."""
    return {
        key: value.to(device, non_blocking=True) if isinstance(value, torch.Tensor) else value
        for key, value in batch.items()
    }
