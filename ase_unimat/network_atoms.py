"""The atom-scaled UniMat network: computes only on the occupied slots of the tensor.

The composition says which slots are occupied (slot ``l`` of an element with ``n`` atoms is
occupied when ``l < n``). Those slots are gathered into padded atom tokens ``(B, N, W)``; each
token carries its grid position (period-row, group-column, element-cell and slot embeddings), so
the periodic-table structure of the UniMat tensor is kept while the cost grows with the atoms
present (pairs: ``N^2``), not with the 3,240-slot grid.

Layers follow the spirit of DiffCSP's CSPNet: pairwise messages over all atom pairs built from
periodic relative features only -- Fourier features ``sin/cos(2 pi k (f_j - f_i))``, radial basis
functions of the minimum-image distance under the noisy lattice, and an embedding of the clipped
grid offset ``(d row, d group)`` (the convolution analogue over grid neighbours) -- aggregated with
masked multi-head attention weights and folded into the tokens by an MLP with a residual and
LayerNorm. Only coordinate differences enter, so the network is invariant to translating every
fractional coordinate by the same vector.

Outputs: per-atom coordinate target (3) as a linear read-out plus a sum of pair directions
``sin(2 pi k df)`` weighted by learned pair gates (a force-like term), and the lattice epsilon (6)
from masked mean pooling.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn

from ase_unimat.config import ModelConfig
from ase_unimat.network_common import (
    N_CELLS,
    LatticeScaler,
    NetworkOutput,
    TimeEmbedding,
    cell_from_cellpar,
    natoms_of,
    slot_mask,
)
from ase_unimat.periodic_table import GRID_SHAPE

_IMAGES = torch.tensor(list(itertools.product((-1, 0, 1), repeat=3)), dtype=torch.float32)  # (27, 3)


def gather_slots(composition: torch.Tensor, n_slots: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat slot indices of the occupied slots, padded: ``(B, N)`` indices into ``L * 162`` and a mask.

    Slots are taken in flat (slot, row, column) order; padding indices point at slot 0 and are
    masked out.
    """
    occupied = slot_mask(composition, n_slots).flatten(1)  # (B, L*162)
    counts = occupied.sum(dim=1)  # (B,)
    n_max = max(int(counts.max()), 1)
    order = torch.argsort((~occupied).to(torch.int8), dim=1, stable=True)[:, :n_max]  # (B, N)
    mask = torch.arange(n_max, device=composition.device)[None] < counts[:, None]  # (B, N)
    return torch.where(mask, order, torch.zeros_like(order)), mask


class PairLayer(nn.Module):
    """One message-passing block over all atom pairs with masked multi-head attention."""

    def __init__(self, width: int, pair_dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.src = nn.Linear(width, width)
        self.dst = nn.Linear(width, width, bias=False)
        self.pair = nn.Linear(pair_dim, width, bias=False)
        self.message = nn.Sequential(nn.SiLU(), nn.Linear(width, width), nn.SiLU())
        self.logit = nn.Linear(width, heads)
        self.update = nn.Sequential(
            nn.Linear(2 * width, width), nn.SiLU(), nn.Dropout(dropout), nn.Linear(width, width)
        )
        self.norm = nn.LayerNorm(width)

    def forward(self, h: torch.Tensor, pair: torch.Tensor, grid: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # h (B, N, W); pair (B, N, N, P); grid (B, N, N, W); mask (B, N)
        pre = self.src(h)[:, :, None] + self.dst(h)[:, None, :] + self.pair(pair) + grid  # (B, N, N, W)
        msg = self.message(pre)  # (B, N, N, W)
        logits = self.logit(msg).masked_fill(~mask[:, None, :, None], float("-inf"))  # (B, N, N, H)
        weights = torch.softmax(logits, dim=2)  # over j
        b, n, _, w = msg.shape
        msg = msg.view(b, n, n, self.heads, w // self.heads)
        agg = (weights[..., None] * msg).sum(dim=2).reshape(b, n, w)  # (B, N, W)
        return self.norm(h + self.update(torch.cat([h, agg], dim=-1)))


class AtomNetwork(nn.Module):
    """Atom-token network; see the module docstring. Requires the composition."""

    def __init__(self, config: ModelConfig, *, lattice_mean, lattice_std) -> None:
        super().__init__()
        w = config.width
        self.config = config
        self.scaler = LatticeScaler(lattice_mean, lattice_std)
        self.row_emb = nn.Embedding(GRID_SHAPE[0], w)
        self.col_emb = nn.Embedding(GRID_SHAPE[1], w)
        self.cell_emb = nn.Embedding(N_CELLS, w)
        self.slot_emb = nn.Embedding(config.n_slots, w) if config.slot_embedding else None
        self.time = TimeEmbedding(config.time_dim, w)
        self.lattice_in = nn.Sequential(nn.Linear(6 + 1, w), nn.SiLU(), nn.Linear(w, w))
        r = config.max_grid_offset
        self.grid_emb = nn.Embedding((2 * r + 1) ** 2, w)
        pair_dim = 6 * config.fourier_k + config.n_rbf
        self.register_buffer("freqs", 2 * math.pi * torch.arange(1, config.fourier_k + 1).float(), persistent=False)
        self.register_buffer("rbf_centers", torch.linspace(0.0, config.rbf_cutoff, config.n_rbf), persistent=False)
        self.layers = nn.ModuleList(PairLayer(w, pair_dim, config.heads, config.dropout) for _ in range(config.depth))
        self.coord_out = nn.Linear(w, 3)
        self.gate_src = nn.Linear(w, w)
        self.gate_dst = nn.Linear(w, w, bias=False)
        self.gate_pair = nn.Linear(pair_dim, w, bias=False)
        self.gate_out = nn.Sequential(nn.SiLU(), nn.Linear(w, config.fourier_k))
        self.lattice_out = nn.Sequential(nn.Linear(w, w), nn.SiLU(), nn.Linear(w, 6))

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
            (B, L, 9, 18, 3) noisy fractional coordinates (only occupied slots are read).
        lattice
            (B, 6) noisy standardised lattice features.
        t
            (B,) diffusion times in [0, 1].
        composition
            (B, 9, 18) atom counts; required by this network.
        occupancy
            Ignored (the atom network does not diffuse occupancy).
        """
        if composition is None:
            raise ValueError("the atom network needs the composition (it computes only on occupied slots)")
        b, n_slots = coords.shape[0], coords.shape[1]
        index, mask = gather_slots(composition, n_slots)  # (B, N), (B, N)
        frac = torch.gather(coords.reshape(b, -1, 3), 1, index[..., None].expand(-1, -1, 3))  # (B, N, 3)
        slot, cell = index // N_CELLS, index % N_CELLS
        row, col = cell // GRID_SHAPE[1], cell % GRID_SHAPE[1]
        natoms = natoms_of(composition)  # (B,)

        h = self.row_emb(row) + self.col_emb(col) + self.cell_emb(cell)  # (B, N, W)
        if self.slot_emb is not None:
            h = h + self.slot_emb(slot)
        size = torch.log(natoms.float().clamp(min=1))[:, None]  # (B, 1)
        h = h + (self.time(t) + self.lattice_in(torch.cat([lattice, size], dim=-1)))[:, None]

        diff = frac[:, None, :, :] - frac[:, :, None, :]  # (B, N, N, 3): f_j - f_i
        pair = self._pair_features(diff, lattice, natoms)  # (B, N, N, P)
        r = self.config.max_grid_offset
        d_row = (row[:, None, :] - row[:, :, None]).clamp(-r, r) + r
        d_col = (col[:, None, :] - col[:, :, None]).clamp(-r, r) + r
        grid = self.grid_emb(d_row * (2 * r + 1) + d_col)  # (B, N, N, W)

        for layer in self.layers:
            h = layer(h, pair, grid, mask)

        coord = self.coord_out(h) + self._directional(h, pair, diff, mask)  # (B, N, 3)
        maskf = mask.float()[..., None]  # (B, N, 1)
        pooled = (h * maskf).sum(1) / maskf.sum(1).clamp(min=1)  # (B, W)
        out = torch.zeros(b, n_slots * N_CELLS, 3, dtype=coord.dtype, device=coord.device)
        out.scatter_(1, index[..., None].expand(-1, -1, 3), coord * maskf)
        return NetworkOutput(out.view(coords.shape), self.lattice_out(pooled), None)

    def _pair_features(self, diff: torch.Tensor, lattice: torch.Tensor, natoms: torch.Tensor) -> torch.Tensor:
        """Fourier features of ``diff`` and RBFs of the minimum-image distance: (B, N, N, 6K + R)."""
        phase = diff[..., None] * self.freqs  # (B, N, N, 3, K)
        fourier = torch.cat([torch.sin(phase), torch.cos(phase)], dim=-1).flatten(-2)  # (B, N, N, 6K)
        cellpar = self.scaler.decode(lattice.clamp(-6.0, 6.0), natoms)  # (B, 6)
        cell = cell_from_cellpar(cellpar).to(diff.dtype)  # (B, 3, 3)
        wrapped = diff - torch.round(diff)  # (B, N, N, 3) in [-0.5, 0.5]
        images = wrapped[..., None, :] + _IMAGES.to(diff)  # (B, N, N, 27, 3)
        cart = torch.einsum("bijkx,bxy->bijky", images, cell)  # (B, N, N, 27, 3)
        dist = cart.square().sum(-1).min(dim=-1).values.clamp(min=1e-8).sqrt()  # (B, N, N)
        spacing = self.config.rbf_cutoff / max(self.config.n_rbf - 1, 1)
        rbf = torch.exp(-(((dist[..., None] - self.rbf_centers) / spacing) ** 2))  # (B, N, N, R)
        return torch.cat([fourier, rbf], dim=-1)

    def _directional(self, h: torch.Tensor, pair: torch.Tensor, diff: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Sum over neighbours j of gated periodic directions ``sin(2 pi k (f_j - f_i))``: (B, N, 3)."""
        pre = self.gate_src(h)[:, :, None] + self.gate_dst(h)[:, None, :] + self.gate_pair(pair)
        gates = self.gate_out(pre) * mask[:, None, :, None].float()  # (B, N, N, K)
        directions = torch.sin(diff[..., None] * self.freqs) / self.freqs  # (B, N, N, 3, K)
        count = mask.float().sum(1).clamp(min=1)[:, None, None]  # (B, 1, 1)
        return torch.einsum("bijk,bijxk->bix", gates, directions) / count
