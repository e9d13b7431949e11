"""Random small crystals and a 40-structure HDF5 file of them (the data and training tests share it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ase import Atoms

from ase_unimat.data.hdf5 import write_structures

N_SLOTS = 6


def crystals(rng: np.random.Generator, n: int) -> list[Atoms]:
    out = []
    for _ in range(n):
        elements = rng.choice(np.arange(1, 104), size=rng.integers(1, 4), replace=False)
        numbers = np.repeat(elements, rng.integers(1, N_SLOTS + 1, size=len(elements)))
        cell = np.diag(rng.uniform(3, 9, 3)) + rng.normal(size=(3, 3)) * 0.4
        out.append(Atoms(numbers=numbers, cell=cell, scaled_positions=rng.random((len(numbers), 3)), pbc=True))
    return out


def make_dataset_file(tmp_path: Path, rng: np.random.Generator) -> tuple[Path, list[Atoms], np.ndarray]:
    """``set.h5`` of 40 random crystals with an ``energy`` property; returns (path, structures, energies)."""
    structures = crystals(rng, 40)
    path = tmp_path / "set.h5"
    energies = np.linspace(-1, 1, 40)
    write_structures(path, structures, n_slots=N_SLOTS, material_ids=[f"id-{i}" for i in range(40)],
                     properties={"energy": energies})
    return path, structures, energies
