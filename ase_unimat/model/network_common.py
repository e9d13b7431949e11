"""Pieces both UniMat networks share: time embedding, lattice scaling, slot masks, the output type."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from ase_unimat.core.periodic_table import GRID_SHAPE

N_CELLS = GRID_SHAPE[0] * GRID_SHAPE[1]  # 162 element cells


class NetworkOutput(NamedTuple):
    """What a network predicts, in the diffusion's target space."""

    coords: torch.Tensor  # (B, L, 9, 18, 3) coordinate target (zero on slots the network did not see)
    lattice: torch.Tensor  # (B, 6) lattice epsilon
    occupancy: torch.Tensor | None  # (B, L, 9, 18) occupancy epsilon (dense network), else None


def sinusoidal_embedding(t: torch.Tensor, dim: int, *, scale: float = 1000.0) -> torch.Tensor:
    """Transformer-style sin/cos embedding of diffusion times ``t`` in [0, 1]: (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = scale * t.float()[:, None] * freqs[None]  # (B, half)
    emb = torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class TimeEmbedding(nn.Module):
    """Sinusoidal time features followed by a two-layer MLP: (B,) -> (B, width)."""

    def __init__(self, time_dim: int, width: int) -> None:
        super().__init__()
        self.time_dim = time_dim
        self.mlp = nn.Sequential(nn.Linear(time_dim, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(sinusoidal_embedding(t, self.time_dim))


class LatticeScaler(nn.Module):
    """Maps ``(a, b, c, alpha, beta, gamma)`` to standardised features and back.

    Features: ``(log(a / N^1/3), log(b / N^1/3), log(c / N^1/3), alpha, beta, gamma)`` minus the
    dataset mean, divided by the dataset standard deviation (both from the config).
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32), persistent=False)
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32), persistent=False)

    def encode(self, lattice: torch.Tensor, natoms: torch.Tensor) -> torch.Tensor:
        """(B, 6) Angstrom/degrees and (B,) atom counts -> (B, 6) standardised features."""
        scale = natoms.float().clamp(min=1)[:, None] ** (1.0 / 3.0)  # (B, 1)
        raw = torch.cat([torch.log(lattice[:, :3] / scale), lattice[:, 3:]], dim=-1)
        return (raw - self.mean) / self.std

    def decode(self, features: torch.Tensor, natoms: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`encode` (lengths are positive by construction; angles are not checked)."""
        raw = features * self.std + self.mean
        scale = natoms.float().clamp(min=1)[:, None] ** (1.0 / 3.0)
        return torch.cat([torch.exp(raw[:, :3].clamp(max=20.0)) * scale, raw[:, 3:]], dim=-1)


def cell_from_cellpar(cellpar: torch.Tensor, *, min_angle: float = 30.0) -> torch.Tensor:
    """(B, 3, 3) cell rows from (B, 6) parameters, ASE's orientation; angles clamped to stay 3-D.

    Used for distance features of noisy lattices, so it never fails: angles are clamped to
    [min_angle, 180 - min_angle] and the third component to a small positive value.
    """
    a, b, c = cellpar[:, 0], cellpar[:, 1], cellpar[:, 2]
    angles = torch.deg2rad(cellpar[:, 3:].clamp(min_angle, 180.0 - min_angle))
    cos_al, cos_be, cos_ga = torch.cos(angles).unbind(-1)
    sin_ga = torch.sin(angles[:, 2])
    zero = torch.zeros_like(a)
    v1 = torch.stack([a, zero, zero], dim=-1)
    v2 = torch.stack([b * cos_ga, b * sin_ga, zero], dim=-1)
    cx = cos_be
    cy = (cos_al - cos_be * cos_ga) / sin_ga
    cz = torch.sqrt((1.0 - cx**2 - cy**2).clamp(min=1e-4))
    v3 = c[:, None] * torch.stack([cx, cy, cz], dim=-1)
    return torch.stack([v1, v2, v3], dim=1)  # (B, 3, 3)


def slot_mask(composition: torch.Tensor, n_slots: int) -> torch.Tensor:
    """(B, L, 9, 18) bool: slot ``l`` of a cell is occupied when ``l < count`` (occupied slots come first)."""
    slots = torch.arange(n_slots, device=composition.device)[None, :, None, None]  # (1, L, 1, 1)
    return slots < composition.round().long()[:, None]


def natoms_of(composition: torch.Tensor) -> torch.Tensor:
    """(B,) atom counts of (B, 9, 18) composition grids."""
    return composition.round().long().sum(dim=(-2, -1))
