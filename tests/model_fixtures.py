"""Tiny UniMat configs and a batch of real small crystals for the model tests (not a test module)."""

from __future__ import annotations

import numpy as np
import torch
from ase.build import bulk

from ase_unimat.core.representation import composition_of, encode_batch
from ase_unimat.model.config import UniMatConfig, from_dict, to_dict

N_SLOTS = 8


def tiny_config(network: str = "atoms", **model: object) -> UniMatConfig:
    """A few-thousand-parameter config of either network (L = 8 slots)."""
    data = to_dict(UniMatConfig())
    data["name"] = f"tiny-{network}"
    data["model"].update(network=network, n_slots=N_SLOTS, width=32, depth=2, heads=2, time_dim=16, fourier_k=2, n_rbf=8)
    data["model"].update(model)
    data["diffusion"]["default_steps"] = 8
    return from_dict(data)


def small_crystals() -> list:
    """Five small real crystal structures (1-8 atoms)."""
    return [
        bulk("NaCl", "rocksalt", a=5.64, cubic=True),
        bulk("Si", "diamond", a=5.43),
        bulk("Cu", "fcc", a=3.61),
        bulk("ZnS", "zincblende", a=5.41, cubic=True),
        bulk("MgO", "rocksalt", a=4.21),
    ]


def small_batch(n_slots: int = N_SLOTS) -> dict[str, torch.Tensor]:
    """The trainer's batch contract for :func:`small_crystals`."""
    coords, lattice = encode_batch(small_crystals(), n_slots=n_slots)
    composition = composition_of(coords)
    return {
        "coords": torch.from_numpy(coords),
        "lattice": torch.from_numpy(lattice).float(),
        "composition": torch.from_numpy(composition).float(),
        "natoms": torch.from_numpy(composition.sum(axis=(1, 2))),
    }


def overfit(model, batch: dict[str, torch.Tensor], *, steps: int, lr: float = 3e-3) -> tuple[float, float]:
    """Train on one batch with fixed noise; (first loss, last loss)."""
    torch.manual_seed(0)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator()
    losses = []
    for _ in range(steps):
        generator.manual_seed(0)
        loss, _ = model.loss(batch, generator=generator)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
    return losses[0], float(np.mean(losses[-3:]))
