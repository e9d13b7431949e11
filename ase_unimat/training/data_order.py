"""The deterministic data order of training: a seeded permutation per epoch, seeded augmentation, resumable.

Exact resume rests on this module: the order of epoch ``e`` is a permutation seeded by
``(seed, e)``, the augmentation of item ``i`` in epoch ``e`` is seeded by ``(seed, e, i)``, and
a sampler restarts from any position of an epoch. Under DDP each rank takes every
``world_size``-th item of a global batch (the ``DistributedSampler`` layout).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from ase_unimat.core.representation import permute_slots


def epoch_permutation(n: int, *, seed: int, epoch: int) -> np.ndarray:
    """The sample order ``(n,)`` of ``epoch``: a permutation seeded by ``(seed, epoch)``."""
    return np.random.default_rng([seed, epoch]).permutation(n)


class EpochBatchSampler:
    """DataLoader ``batch_sampler`` of ``(epoch, index)`` keys; a seeded permutation per epoch, resumable.

    A global batch is the next ``batch_size * world_size`` entries of the epoch's permutation; rank
    ``r`` takes every ``world_size``-th one from ``r`` (the DistributedSampler layout). The
    incomplete last global batch is dropped. Call :meth:`set_epoch` before each ``iter(loader)``.
    """

    def __init__(self, n: int, *, batch_size: int, seed: int, rank: int = 0, world_size: int = 1) -> None:
        if batch_size < 1 or world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"bad sampler layout: batch_size={batch_size}, rank={rank}, world_size={world_size}")
        self.global_batch = batch_size * world_size
        if n < self.global_batch:
            raise ValueError(f"dataset has {n} samples, fewer than one global batch ({batch_size} x {world_size})")
        self.n, self.seed, self.rank, self.world_size = n, seed, rank, world_size
        self.epoch, self.start_batch = 0, 0

    @property
    def batches_per_epoch(self) -> int:
        """Steps in one epoch."""
        return self.n // self.global_batch

    def set_epoch(self, epoch: int, *, position: int = 0) -> None:
        """Iterate ``epoch`` from ``position``, an index into its permutation (a multiple of the global batch)."""
        if position % self.global_batch:
            raise ValueError(f"position {position} is not a multiple of the global batch {self.global_batch}")
        self.epoch, self.start_batch = epoch, position // self.global_batch

    def __len__(self) -> int:
        return max(0, self.batches_per_epoch - self.start_batch)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        order = epoch_permutation(self.n, seed=self.seed, epoch=self.epoch)
        for batch in range(self.start_batch, self.batches_per_epoch):
            chunk = order[batch * self.global_batch : (batch + 1) * self.global_batch]
            yield [(self.epoch, int(index)) for index in chunk[self.rank :: self.world_size]]


class EpochKeyedDataset(Dataset):
    """Items addressed by ``(epoch, index)``; with ``augment`` the occupied slots of each element are
    shuffled with ``numpy.random.default_rng([seed, epoch, index])`` (never a global RNG)."""

    def __init__(self, base: Dataset, *, seed: int, augment: bool) -> None:
        self.base, self.seed, self.augment = base, seed, augment

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        epoch, index = key
        return self._augmented(self.base[index], epoch, index)

    def __getitems__(self, keys: Sequence[tuple[int, int]]) -> list[dict]:
        """A whole batch; uses the base dataset's batched read when it has one."""
        indices = [index for _, index in keys]
        read_many = getattr(self.base, "__getitems__", None)
        items = read_many(indices) if read_many is not None else [self.base[index] for index in indices]
        return [self._augmented(item, epoch, index) for item, (epoch, index) in zip(items, keys, strict=True)]

    def _augmented(self, item: Mapping, epoch: int, index: int) -> dict:
        item = dict(item)
        if self.augment:
            rng = np.random.default_rng([self.seed, epoch, index])
            coords = permute_slots(np.asarray(item["coords"]), rng=rng)  # (L, 9, 18, 3)
            item["coords"] = torch.from_numpy(np.ascontiguousarray(coords))
        return item


def collate(items: Sequence[Mapping]) -> dict:
    """Stack items into the batch dict of ARCHITECTURE.md (non-tensor extras become lists)."""
    return default_collate(list(items))
