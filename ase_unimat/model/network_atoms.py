"""The atom-scaled UniMat network: computes only on the occupied slots of the tensor.

The composition says which slots are occupied (slot ``l`` of an element with ``n`` atoms is
occupied when ``l < n``). Those slots are gathered into a flat list of atom tokens ``(A, W)``
(all crystals of the batch one after another, no padding); each token carries its grid position
(period-row, group-column, element-cell and slot embeddings), so the periodic-table structure of
the UniMat tensor is kept while the cost grows with the atoms present (all ordered pairs within
a crystal, ``sum_i n_i^2``), not with the 3,240-slot grid.

Layers follow the spirit of DiffCSP's CSPNet: pairwise messages over all atom pairs built from
periodic relative features only -- Fourier features ``sin/cos(2 pi k (f_j - f_i))``, radial basis
functions of the minimum-image distance under the noisy lattice, and an embedding of the clipped
grid offset ``(d row, d group)`` (the convolution analogue over grid neighbours) -- aggregated with
multi-head attention weights (a softmax over each atom's neighbours j) and folded into the tokens by an MLP with a residual and
LayerNorm. Only coordinate differences enter, so the network is invariant to translating every
fractional coordinate by the same vector.

Outputs: per-atom coordinate target (3) as a linear read-out plus a sum of pair directions
``sin(2 pi k df)`` weighted by learned pair gates (a force-like term), and the lattice epsilon (6)
from masked mean pooling.
"""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import torch
from torch import nn

from ase_unimat.core.periodic_table import GRID_SHAPE
from ase_unimat.model.config import ModelConfig
from ase_unimat.model.network_common import (
    N_CELLS,
    LatticeScaler,
    NetworkOutput,
    TimeEmbedding,
    cell_from_cellpar,
    natoms_of,
    slot_mask,
)

N_SPACEGROUPS = 230
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


class Pairs(NamedTuple):
    """All ordered atom pairs (i, j) of the same crystal, i == j included, over the flat atom list."""

    src: torch.Tensor  # (P,) atom i (receives the message)
    dst: torch.Tensor  # (P,) atom j
    crystal: torch.Tensor  # (P,) crystal of the pair
    count: torch.Tensor  # (A,) atoms in the crystal of each atom


def all_pairs(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, Pairs]:
    """Flat atoms of a padded ``(B, N)`` mask and their pairs: ``(crystal (A,), position (A,), Pairs)``."""
    crystal, position = mask.nonzero(as_tuple=True)  # (A,), (A,)
    atom_id = torch.full(mask.shape, -1, dtype=torch.long, device=mask.device)
    atom_id[crystal, position] = torch.arange(len(crystal), device=mask.device)
    pb, pi, pj = (mask[:, :, None] & mask[:, None, :]).nonzero(as_tuple=True)  # (P,) each
    count = mask.sum(1)[crystal]  # (A,)
    return crystal, position, Pairs(atom_id[pb, pi], atom_id[pb, pj], pb, count)


def segment_softmax(logits: torch.Tensor, segment: torch.Tensor, n_segments: int) -> torch.Tensor:
    """Softmax of ``logits (P, H)`` within each group of rows sharing ``segment (P,)``."""
    index = segment[:, None].expand_as(logits)
    with torch.no_grad():
        peak = torch.full((n_segments, logits.shape[1]), float("-inf"), device=logits.device, dtype=logits.dtype)
        peak = peak.scatter_reduce(0, index, logits, reduce="amax", include_self=True)
    weights = torch.exp(logits - peak[segment])
    total = torch.zeros(n_segments, logits.shape[1], device=logits.device, dtype=logits.dtype).index_add(0, segment, weights)
    return weights / total[segment]


class PairLayer(nn.Module):
    """One message-passing block over all atom pairs with multi-head attention over neighbours j."""

    def __init__(self, width: int, pair_width: int, pair_dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.src = nn.Linear(width, pair_width)
        self.dst = nn.Linear(width, pair_width, bias=False)
        self.pair = nn.Linear(pair_dim, pair_width, bias=False)
        self.message = nn.Sequential(nn.SiLU(), nn.Linear(pair_width, pair_width), nn.SiLU())
        self.logit = nn.Linear(pair_width, heads)
        self.update = nn.Sequential(
            nn.Linear(width + pair_width, width), nn.SiLU(), nn.Dropout(dropout), nn.Linear(width, width)
        )
        self.norm = nn.LayerNorm(width)

    def forward(self, h: torch.Tensor, pair: torch.Tensor, grid: torch.Tensor, pairs: Pairs) -> torch.Tensor:
        # h (A, W); pair (P, F); grid (P, Wp)
        pre = self.src(h)[pairs.src] + self.dst(h)[pairs.dst] + self.pair(pair) + grid  # (P, Wp)
        msg = self.message(pre)  # (P, Wp)
        weights = segment_softmax(self.logit(msg), pairs.src, len(h))  # (P, H)
        n_pairs, wp = msg.shape
        weighted = (weights[..., None] * msg.view(n_pairs, self.heads, wp // self.heads)).view(n_pairs, wp)
        agg = torch.zeros(len(h), wp, device=h.device, dtype=msg.dtype).index_add(0, pairs.src, weighted)  # (A, Wp)
        return self.norm(h + self.update(torch.cat([h, agg], dim=-1)))


class AtomNetwork(nn.Module):
    """Atom-token network; see the module docstring. Requires the composition."""

    def __init__(self, config: ModelConfig, *, lattice_mean, lattice_std) -> None:
        super().__init__()
        w, wp = config.width, config.pair_width
        self.config = config
        self.scaler = LatticeScaler(lattice_mean, lattice_std)
        self.row_emb = nn.Embedding(GRID_SHAPE[0], w)
        self.col_emb = nn.Embedding(GRID_SHAPE[1], w)
        self.cell_emb = nn.Embedding(N_CELLS, w)
        self.slot_emb = nn.Embedding(config.n_slots, w) if config.slot_embedding else None
        self.time = TimeEmbedding(config.time_dim, w)
        # space group 1-230, 0 = none: the condition classifier-free guidance drops
        self.spacegroup_emb = nn.Embedding(N_SPACEGROUPS + 1, w) if config.spacegroup_condition else None
        self.lattice_in = nn.Sequential(nn.Linear(6 + 1, w), nn.SiLU(), nn.Linear(w, w))
        r = config.max_grid_offset
        self.grid_emb = nn.Embedding((2 * r + 1) ** 2, wp)
        pair_dim = 6 * config.fourier_k + config.n_rbf
        self.register_buffer("freqs", 2 * math.pi * torch.arange(1, config.fourier_k + 1).float(), persistent=False)
        self.register_buffer("rbf_centers", torch.linspace(0.0, config.rbf_cutoff, config.n_rbf), persistent=False)
        self.layers = nn.ModuleList(
            PairLayer(w, wp, pair_dim, config.heads, config.dropout) for _ in range(config.depth)
        )
        self.coord_out = nn.Linear(w, 3)
        self.gate_src = nn.Linear(w, wp)
        self.gate_dst = nn.Linear(w, wp, bias=False)
        self.gate_pair = nn.Linear(pair_dim, wp, bias=False)
        self.gate_out = nn.Sequential(nn.SiLU(), nn.Linear(wp, config.fourier_k))
        self.lattice_out = nn.Sequential(nn.Linear(w, w), nn.SiLU(), nn.Linear(w, 6))

    def forward(
        self,
        coords: torch.Tensor,
        lattice: torch.Tensor,
        t: torch.Tensor,
        composition: torch.Tensor | None,
        *,
        occupancy: torch.Tensor | None = None,
        spacegroup: torch.Tensor | None = None,
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
        spacegroup
            (B,) int64 space-group numbers 1-230, 0 = no condition; None = no condition for all.
            Used only by a network built with ``spacegroup_condition``.
        """
        if composition is None:
            raise ValueError("the atom network needs the composition (it computes only on occupied slots)")
        b, n_slots = coords.shape[0], coords.shape[1]
        index, mask = gather_slots(composition, n_slots)  # (B, N), (B, N)
        crystal, position, pairs = all_pairs(mask)  # atoms (A,), pairs (P,)
        flat_index = crystal * (n_slots * N_CELLS) + index[crystal, position]  # (A,) into B*L*162
        frac = coords.reshape(-1, 3)[flat_index]  # (A, 3)
        slot_cell = index[crystal, position]
        slot, cell = slot_cell // N_CELLS, slot_cell % N_CELLS
        row, col = cell // GRID_SHAPE[1], cell % GRID_SHAPE[1]
        natoms = natoms_of(composition)  # (B,)

        h = self.row_emb(row) + self.col_emb(col) + self.cell_emb(cell)  # (A, W)
        if self.slot_emb is not None:
            h = h + self.slot_emb(slot)
        size = torch.log(natoms.float().clamp(min=1))[:, None]  # (B, 1)
        per_crystal = self.time(t) + self.lattice_in(torch.cat([lattice, size], dim=-1))  # (B, W)
        if self.spacegroup_emb is not None:
            if spacegroup is None:
                spacegroup = torch.zeros(b, dtype=torch.long, device=coords.device)
            per_crystal = per_crystal + self.spacegroup_emb(spacegroup.long().clamp(0, N_SPACEGROUPS))
        h = h + per_crystal[crystal]

        diff = frac[pairs.dst] - frac[pairs.src]  # (P, 3): f_j - f_i
        pair = self._pair_features(diff, lattice, natoms, pairs.crystal)  # (P, F)
        r = self.config.max_grid_offset
        d_row = (row[pairs.dst] - row[pairs.src]).clamp(-r, r) + r
        d_col = (col[pairs.dst] - col[pairs.src]).clamp(-r, r) + r
        grid = self.grid_emb(d_row * (2 * r + 1) + d_col)  # (P, Wp)

        for layer in self.layers:
            h = layer(h, pair, grid, pairs)

        coord = self.coord_out(h) + self._directional(h, pair, diff, pairs)  # (A, 3)
        pooled = torch.zeros(b, h.shape[1], device=h.device, dtype=h.dtype).index_add(0, crystal, h)
        pooled = pooled / natoms.clamp(min=1)[:, None].to(h.dtype)  # (B, W)
        out = torch.zeros(b * n_slots * N_CELLS, 3, dtype=coord.dtype, device=coord.device)
        out[flat_index] = coord
        return NetworkOutput(out.view(coords.shape), self.lattice_out(pooled), None)

    def _pair_features(
        self, diff: torch.Tensor, lattice: torch.Tensor, natoms: torch.Tensor, crystal: torch.Tensor
    ) -> torch.Tensor:
        """Fourier features of ``diff`` and RBFs of the minimum-image distance: (P, 6K + R)."""
        phase = diff[..., None] * self.freqs  # (P, 3, K)
        fourier = torch.cat([torch.sin(phase), torch.cos(phase)], dim=-1).flatten(-2)  # (P, 6K)
        cellpar = self.scaler.decode(lattice.clamp(-6.0, 6.0), natoms)  # (B, 6)
        cell = cell_from_cellpar(cellpar).to(diff.dtype)[crystal]  # (P, 3, 3)
        wrapped = diff - torch.round(diff)  # (P, 3) in [-0.5, 0.5]
        images = wrapped[:, None, :] + _IMAGES.to(diff)  # (P, 27, 3)
        cart = torch.bmm(images, cell)  # (P, 27, 3)
        dist = cart.square().sum(-1).min(dim=-1).values.clamp(min=1e-8).sqrt()  # (P,)
        spacing = self.config.rbf_cutoff / max(self.config.n_rbf - 1, 1)
        rbf = torch.exp(-(((dist[:, None] - self.rbf_centers) / spacing) ** 2))  # (P, R)
        return torch.cat([fourier, rbf], dim=-1)

    def _directional(self, h: torch.Tensor, pair: torch.Tensor, diff: torch.Tensor, pairs: Pairs) -> torch.Tensor:
        """Mean over neighbours j of gated periodic directions ``sin(2 pi k (f_j - f_i))``: (A, 3)."""
        pre = self.gate_src(h)[pairs.src] + self.gate_dst(h)[pairs.dst] + self.gate_pair(pair)  # (P, Wp)
        gates = self.gate_out(pre)  # (P, K)
        directions = torch.sin(diff[..., None] * self.freqs) / self.freqs  # (P, 3, K)
        per_pair = torch.einsum("pk,pxk->px", gates, directions)  # (P, 3)
        total = torch.zeros(len(h), 3, device=h.device, dtype=per_pair.dtype).index_add(0, pairs.src, per_pair)
        return total / pairs.count[:, None].to(total.dtype)
