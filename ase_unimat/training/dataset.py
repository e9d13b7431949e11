"""``UniMatDataset``: the torch Dataset over a UniMat HDF5 file (the format is ``ase_unimat.data.hdf5``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np
import torch

from ase_unimat.core.periodic_table import GRID_SHAPE, Z_TO_CELL
from ase_unimat.data.hdf5 import ATOM_CHUNK, INT_MISSING, dense_coords, open_file


def _hash_keys(seed: int, epoch: int, index: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """Pseudo-random uint64 keys, a pure function of (seed, epoch, index, rank) (splitmix64 finaliser)."""
    with np.errstate(over="ignore"):
        x = (np.uint64(seed % 2**64) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(epoch % 2**64) * np.uint64(0xD1B54A32D192ED03)
             + index.astype(np.uint64) * np.uint64(0xABC98388FB8FAC03) + rank.astype(np.uint64) * np.uint64(0x8CB92BA72F3D8DD7))
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return x


def _ranges(starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """Concatenated ``arange(start, stop)`` for each pair (int64)."""
    lengths = stops - starts
    return np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths) + np.arange(lengths.sum())


class UniMatDataset(torch.utils.data.Dataset):
    """Torch dataset over a UniMat HDF5 file, yielding the batch dict of ARCHITECTURE.md plus ``index``.

    Items: ``coords (L, 9, 18, 3) float32``, ``lattice (6,) float32``, ``composition (9, 18) float32``,
    ``natoms`` and ``index`` (int64 scalars), and each requested property (float32, NaN = missing).

    The per-structure arrays (lattice, natoms, properties: tens of bytes each) are read when the
    dataset is built. The atoms are read on demand through an HDF5 handle that every process opens
    for itself on first use (the handle is never pickled, and a forked process reopens it), so
    DataLoader workers and DDP ranks each read their own; ``in_memory=True`` reads all atoms once
    instead (~15 bytes per atom). ``__getitems__`` serves a whole DataLoader batch in one call, and
    ``dataset[list_of_indices]`` returns a ready batch dict, so the fastest loader is
    ``DataLoader(dataset, sampler=BatchSampler(RandomSampler(dataset), 64, False), batch_size=None)``.

    Parameters
    ----------
    path
        The dataset file.
    in_memory
        Load all atoms at construction instead of reading them per item.
    augment
        Permute the atoms within each element's slots, by random keys that are a pure function of
        ``(seed, epoch, index)`` (a splitmix64 hash; no global RNG) so an item is reproducible; call :meth:`set_epoch` before each epoch (as with
        ``DistributedSampler``). This is :func:`~ase_unimat.core.representation.permute_slots` done on the
        sparse atoms before the tensor is materialised (same distribution, ~50x cheaper per item).
    seed
        Seed of the augmentation.
    properties
        Names of ``properties/`` columns to return as extra keys.
    """

    def __init__(self, path: str | Path, *, in_memory: bool = False, augment: bool = False, seed: int = 0,
                 properties: Sequence[str] = ()) -> None:
        self.path = str(path)
        self.in_memory = bool(in_memory)
        self.augment = bool(augment)
        self.seed = int(seed)
        self.epoch = 0
        with open_file(self.path) as h5:
            self.n_slots = int(h5.attrs["L"])
            self._natoms = h5["natoms"][:].astype(np.int64)  # (N,)
            self._lattice = h5["lattice"][:].astype(np.float32)  # (N, 6)
            missing = [p for p in properties if p not in h5["properties"]]
            if missing:
                raise KeyError(f"{self.path} has no property {missing[0]!r}; it has {sorted(h5['properties'])}")
            self._properties = {p: h5["properties"][p][:].astype(np.float32) for p in properties}
            for p, ds_values in self._properties.items():
                if np.issubdtype(h5["properties"][p].dtype, np.integer):
                    ds_values[ds_values == INT_MISSING] = np.nan
            self._numbers = h5["atoms/z"][:].astype(np.int64) if in_memory else None  # (M,)
            self._frac = h5["atoms/frac"][:] if in_memory else None  # (M, 3)
        self._offsets = np.concatenate([[0], np.cumsum(self._natoms)])  # (N + 1,)
        self._h5 = None
        self._pid = None
        self._datasets = None

    def __len__(self) -> int:
        return len(self._natoms)

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch that seeds the augmentation."""
        self.epoch = int(epoch)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_h5"], state["_pid"], state["_datasets"] = None, None, None
        return state

    def close(self) -> None:
        """Close this process's file handle (it reopens on the next read)."""
        if self._h5 is not None and self._pid == os.getpid():
            self._h5.close()
        self._h5, self._pid, self._datasets = None, None, None

    def _atom_datasets(self) -> tuple[h5py.Dataset, h5py.Dataset]:
        """This process's ``atoms/z`` and ``atoms/frac`` (the file is opened on first use in each process)."""
        if self._h5 is None or self._pid != os.getpid():
            self._h5 = open_file(self.path, rdcc_nbytes=4 * 2**20)
            self._pid = os.getpid()
            self._datasets = (self._h5["atoms/z"], self._h5["atoms/frac"])  # group lookups are slow: keep them
        return self._datasets

    def _check(self, index: int) -> int:
        n = len(self)
        index = int(index)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for a dataset of {n} structures")
        return index % n

    def _atoms(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Atomic numbers (m,) and fractions (m, 3) of the structures ``indices``, in that order."""
        starts, stops = self._offsets[indices], self._offsets[indices + 1]
        if self.in_memory:
            take = _ranges(starts, stops)
            return self._numbers[take], self._frac[take]
        z_ds, frac_ds = self._atom_datasets()
        take = _ranges(starts, stops)  # (m,) atom rows wanted
        # read each touched storage chunk once (HDF5 inflates whole chunks anyway), then gather
        chunk_ids = np.unique(take // ATOM_CHUNK)
        z_parts, frac_parts = [], []
        for c in chunk_ids:
            rows = slice(int(c) * ATOM_CHUNK, (int(c) + 1) * ATOM_CHUNK)
            z_parts.append(z_ds[rows])
            frac_parts.append(frac_ds[rows])
        position = np.searchsorted(chunk_ids, take // ATOM_CHUNK) * ATOM_CHUNK + take % ATOM_CHUNK
        return np.concatenate(z_parts)[position].astype(np.int64), np.concatenate(frac_parts)[position]

    def batch(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        """The structures ``indices`` as one batch dict (``coords (B, L, 9, 18, 3)`` etc.), read in one go."""
        indices = np.array([self._check(i) for i in indices], dtype=np.int64)  # (B,)
        natoms = self._natoms[indices]  # (B,)
        numbers, frac = self._atoms(indices)  # (m,), (m, 3)
        owner = np.repeat(np.arange(len(indices)), natoms)  # (m,)
        if self.augment:  # a random order within each element, from a generator seeded per (seed, epoch, index)
            rank = np.arange(len(numbers)) - np.repeat(np.cumsum(natoms) - natoms, natoms)  # atom within structure
            keys = _hash_keys(self.seed, self.epoch, indices[owner], rank)
            order = np.lexsort((keys, numbers, owner))
            numbers, frac = numbers[order], frac[order]
        coords = dense_coords(natoms, numbers, frac, n_slots=self.n_slots)  # (B, L, 9, 18, 3)
        composition = np.zeros((len(indices), *GRID_SHAPE), dtype=np.float32)  # (B, 9, 18)
        rows, cols = Z_TO_CELL[numbers].T
        np.add.at(composition, (owner, rows, cols), 1.0)
        batch = {"coords": torch.from_numpy(coords), "lattice": torch.from_numpy(self._lattice[indices]),
                 "composition": torch.from_numpy(composition), "natoms": torch.from_numpy(natoms),
                 "index": torch.from_numpy(indices)}
        for name, values in self._properties.items():
            batch[name] = torch.from_numpy(values[indices])
        return batch

    def __getitem__(self, index: int | Sequence[int]) -> dict[str, torch.Tensor]:
        """One structure, or with a sequence of indices (a ``BatchSampler`` with ``batch_size=None``) a batch."""
        if np.ndim(index) == 0:  # an int, numpy or 0-d tensor index
            return {k: v[0] for k, v in self.batch([index]).items()}
        return self.batch(index)

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, torch.Tensor]]:
        """A DataLoader batch in one read (torch calls this instead of ``__getitem__`` per item)."""
        batch = self.batch(indices)
        return [{k: v[i] for k, v in batch.items()} for i in range(len(indices))]
