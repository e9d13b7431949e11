"""The paper's dense UniMat network over the whole ``(L, 9, 18)`` grid (reproduction / GPU scale).

Input per slot: the noisy coordinates as ``sin/cos(2 pi x)`` (6), the noisy occupancy bit (1), the
composition count of the slot's element and whether the composition fills this slot (2; zeros when
the condition is dropped for classifier-free guidance), plus learned slot, period-row and
group-column embeddings. Each block interleaves, with pre-LayerNorm residuals:

- a 3-D convolution over ``(L, 9, 18)`` (neighbouring slots and neighbouring elements),
- self-attention along ``L`` (the slots of one element),
- self-attention over the flattened ``9 x 18`` plane (or along period and group separately),
- an MLP,

and is modulated (FiLM) by a global vector of the diffusion time and the noisy lattice. The lattice
epsilon is read from a mean-pooled global token. Outputs: coordinate target (3) and occupancy
epsilon (1) per slot. Cost grows with the 3,240 slots, whatever the crystal.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ase_unimat.core.periodic_table import GRID_SHAPE
from ase_unimat.model.config import ModelConfig
from ase_unimat.model.network_common import NetworkOutput, TimeEmbedding, slot_mask

_IN_CHANNELS = 9


class AxialAttention(nn.Module):
    """Multi-head self-attention along one axis of a ``(B, L, 9, 18, W)`` tensor (or the 9 x 18 plane)."""

    def __init__(self, width: int, heads: int, axis: str) -> None:
        super().__init__()
        self.heads, self.axis = heads, axis
        self.norm = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n_slots, rows, cols, w = x.shape
        y = self.norm(x)
        if self.axis == "slot":
            seq = y.permute(0, 2, 3, 1, 4).reshape(-1, n_slots, w)  # (B*9*18, L, W)
        elif self.axis == "plane":
            seq = y.reshape(-1, rows * cols, w)  # (B*L, 162, W)
        elif self.axis == "row":
            seq = y.permute(0, 1, 3, 2, 4).reshape(-1, rows, w)  # (B*L*18, 9, W)
        else:  # "col"
            seq = y.reshape(-1, cols, w)  # (B*L*9, 18, W)
        q, k, v = self.qkv(seq).view(seq.shape[0], seq.shape[1], 3, self.heads, w // self.heads).unbind(2)
        att = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        att = self.out(att.transpose(1, 2).reshape(seq.shape))
        if self.axis == "slot":
            att = att.view(b, rows, cols, n_slots, w).permute(0, 3, 1, 2, 4)
        elif self.axis == "row":
            att = att.view(b, n_slots, cols, rows, w).permute(0, 1, 3, 2, 4)
        return x + att.reshape(x.shape)


class DenseBlock(nn.Module):
    """Conv3d + axial attentions + MLP, FiLM-modulated by the global (time, lattice) vector."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        w, k = config.width, config.conv_kernel
        self.film = nn.Linear(w, 2 * w)
        self.conv_norm = nn.LayerNorm(w)
        self.conv = nn.Conv3d(w, w, k, padding=k // 2)
        axes = ["slot", "plane"] if config.plane_attention else ["slot", "row", "col"]
        self.attentions = nn.ModuleList(AxialAttention(w, config.heads, axis) for axis in axes)
        self.mlp_norm = nn.LayerNorm(w)
        self.mlp = nn.Sequential(nn.Linear(w, 2 * w), nn.SiLU(), nn.Dropout(config.dropout), nn.Linear(2 * w, w))

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        # x (B, L, 9, 18, W); cond (B, W)
        scale, shift = self.film(cond)[:, None, None, None].chunk(2, dim=-1)
        y = self.conv_norm(x) * (1 + scale) + shift
        x = x + F.silu(self.conv(y.permute(0, 4, 1, 2, 3))).permute(0, 2, 3, 4, 1)
        for attention in self.attentions:
            x = attention(x)
        return x + self.mlp(self.mlp_norm(x))


class DenseNetwork(nn.Module):
    """Dense grid network; see the module docstring. Works with or without a composition."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        w = config.width
        self.config = config
        self.embed = nn.Linear(_IN_CHANNELS, w)
        self.slot_emb = nn.Parameter(torch.randn(config.n_slots, 1, 1, w) * 0.02)
        self.row_emb = nn.Parameter(torch.randn(1, GRID_SHAPE[0], 1, w) * 0.02)
        self.col_emb = nn.Parameter(torch.randn(1, 1, GRID_SHAPE[1], w) * 0.02)
        self.time = TimeEmbedding(config.time_dim, w)
        self.lattice_in = nn.Sequential(nn.Linear(6, w), nn.SiLU(), nn.Linear(w, w))
        self.blocks = nn.ModuleList(DenseBlock(config) for _ in range(config.depth))
        self.out_norm = nn.LayerNorm(w)
        self.slot_out = nn.Linear(w, 4)  # coords (3) + occupancy (1)
        self.lattice_out = nn.Sequential(nn.Linear(2 * w, w), nn.SiLU(), nn.Linear(w, 6))

    def forward(
        self,
        coords: torch.Tensor,
        lattice: torch.Tensor,
        t: torch.Tensor,
        composition: torch.Tensor | None,
        *,
        occupancy: torch.Tensor | None = None,
    ) -> NetworkOutput:
        """Predict the diffusion targets.

        Parameters
        ----------
        coords
            (B, L, 9, 18, 3) noisy fractional coordinates of every slot.
        lattice
            (B, 6) noisy standardised lattice features.
        t
            (B,) diffusion times in [0, 1].
        composition
            (B, 9, 18) atom counts, or None / zeros for the unconditional network.
        occupancy
            (B, L, 9, 18) noisy occupancy bits; required.
        """
        if occupancy is None:
            raise ValueError("the dense network needs the noisy occupancy channel")
        b = coords.shape[0]
        if composition is None:
            composition = torch.zeros(b, *GRID_SHAPE, device=coords.device)
        phase = 2 * math.pi * coords  # (B, L, 9, 18, 3)
        count = composition.float()[:, None].expand_as(occupancy) / 4.0  # (B, L, 9, 18)
        filled = slot_mask(composition, self.config.n_slots).float()
        x = torch.cat(
            [torch.sin(phase), torch.cos(phase), occupancy[..., None], count[..., None], filled[..., None]], dim=-1
        )  # (B, L, 9, 18, 9)
        x = self.embed(x) + self.slot_emb + self.row_emb + self.col_emb  # (B, L, 9, 18, W)
        cond = self.time(t) + self.lattice_in(lattice)  # (B, W)
        for block in self.blocks:
            x = block(x, cond)
        x = self.out_norm(x)
        per_slot = self.slot_out(x)  # (B, L, 9, 18, 4)
        pooled = x.mean(dim=(1, 2, 3))  # (B, W)
        lattice_eps = self.lattice_out(torch.cat([pooled, cond], dim=-1))
        return NetworkOutput(per_slot[..., :3], lattice_eps, per_slot[..., 3])
