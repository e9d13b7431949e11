"""Batched lattice reduction in torch: the same crystals in short, nearly orthogonal cells.

Materials Project cells come as stored, some very skewed (angles down to 9 degrees in MP-20).
The model learns and samples lattices far better in a reduced cell: lengths and angles then have a
narrow distribution (angles in about [60, 120] degrees) and 27 periodic images suffice for
minimum-image distances. :func:`reduce_cells` applies greedy pairwise (Lagrange-Gauss) reduction
to a whole batch at once: while some ``v_i - round(v_i.v_j / v_j.v_j) v_j`` is shorter than
``v_i``, replace it. The fractional coordinates are transformed with the same unimodular integer
matrix, so every Cartesian position is unchanged.
"""

from __future__ import annotations

import itertools

import torch

from ase_unimat.model.network_common import cell_from_cellpar

_PAIRS = [(i, j) for i, j in itertools.permutations(range(3), 2)]


def cellpar_of(cell: torch.Tensor) -> torch.Tensor:
    """(B, 6) lengths and angles (degrees) of (B, 3, 3) cells (rows are vectors)."""
    lengths = cell.norm(dim=-1)  # (B, 3)
    cosines = []
    for i, j in ((1, 2), (0, 2), (0, 1)):
        cosines.append((cell[:, i] * cell[:, j]).sum(-1) / (lengths[:, i] * lengths[:, j]))
    angles = torch.rad2deg(torch.arccos(torch.stack(cosines, dim=-1).clamp(-1.0, 1.0)))
    return torch.cat([lengths, angles], dim=-1)


@torch.no_grad()
def reduce_basis(cell: torch.Tensor, *, max_sweeps: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy pairwise reduction of (B, 3, 3) cells: ``(reduced, op)`` with ``reduced = op @ cell``.

    ``op`` is integer-valued with determinant +1 (the reduced cell keeps the handedness).
    """
    cell = cell.double().clone()
    op = torch.eye(3, dtype=torch.float64, device=cell.device).expand_as(cell).clone()
    for _ in range(max_sweeps):
        changed = False
        for i, j in _PAIRS:
            vi, vj = cell[:, i], cell[:, j]
            k = torch.round((vi * vj).sum(-1) / (vj * vj).sum(-1))  # (B,)
            if torch.any(k != 0):
                changed = True
                cell[:, i] = vi - k[:, None] * vj
                op[:, i] = op[:, i] - k[:, None] * op[:, j]
        if not changed:
            break
    # sort vectors by length (a <= b <= c), then restore a right-handed basis
    order = torch.argsort(cell.norm(dim=-1), dim=-1)  # (B, 3)
    cell = torch.gather(cell, 1, order[..., None].expand(-1, -1, 3))
    op = torch.gather(op, 1, order[..., None].expand(-1, -1, 3))
    flip = torch.linalg.det(cell) < 0
    cell[flip] = -cell[flip]
    op[flip] = -op[flip]
    return cell, op


@torch.no_grad()
def reduce_cells(coords: torch.Tensor, lattice: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The same crystals in reduced cells.

    Parameters
    ----------
    coords
        (B, L, 9, 18, 3) fractional coordinates, -1 in empty slots.
    lattice
        (B, 6) ``(a, b, c, alpha, beta, gamma)`` in Angstrom and degrees.

    Returns
    -------
    coords, lattice
        Transformed coordinates (wrapped into [0, 1), empty slots kept at -1) and reduced lattices.
    """
    cell = cell_from_cellpar(lattice.double(), min_angle=0.0)  # (B, 3, 3)
    reduced, op = reduce_basis(cell)
    inverse = torch.round(torch.linalg.inv(op))  # (B, 3, 3), integer
    occupied = coords[..., :1] > -0.5
    b = coords.shape[0]
    frac = torch.einsum("bnx,bxy->bny", coords.reshape(b, -1, 3).double(), inverse).reshape(coords.shape)
    frac = torch.remainder(frac, 1.0).to(coords.dtype)
    frac = torch.where(frac >= 1.0, torch.zeros_like(frac), frac)
    new_coords = torch.where(occupied, frac, coords)
    return new_coords, cellpar_of(reduced).to(lattice.dtype)
