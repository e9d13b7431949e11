"""Tests of ase_unimat.model.cell_reduction: same crystals, short cells."""

from __future__ import annotations

import numpy as np
import torch
from ase.build import bulk, make_supercell
from model_fixtures import small_crystals

from ase_unimat.core.representation import decode, encode_batch
from ase_unimat.model.cell_reduction import cellpar_of, reduce_basis, reduce_cells
from ase_unimat.model.network_common import cell_from_cellpar


def _skewed(atoms, matrix):
    """The same crystal in the cell ``matrix @ cell`` (a unimodular change of basis)."""
    skewed = make_supercell(atoms, np.array(matrix), wrap=True)
    assert len(skewed) == len(atoms)
    return skewed


def _sorted_distances(atoms):
    return np.sort(atoms.get_all_distances(mic=True).ravel())


def test_skewed_cells_are_reduced_to_the_same_crystal():
    matrices = [[[1, 3, 0], [0, 1, 0], [0, 0, 1]], [[1, 0, 0], [2, 1, 0], [-3, 4, 1]], [[1, 1, 1], [0, 1, 1], [0, 0, 1]]]
    crystals = [_skewed(atoms, m) for atoms in small_crystals() for m in matrices]
    crystals.append(bulk("Mg", "hcp", a=3.2, c=5.2))
    coords, lattice = encode_batch(crystals, n_slots=8)
    new_coords, new_lattice = reduce_cells(torch.from_numpy(coords), torch.from_numpy(lattice).float())
    assert torch.all((new_lattice[:, 3:] > 55) & (new_lattice[:, 3:] < 125))
    assert torch.all(new_lattice[:, :3].diff(dim=1) >= -1e-4)  # a <= b <= c
    empty = torch.from_numpy(coords) < -0.5
    assert torch.all(new_coords[empty] == -1) and torch.all((new_coords[~empty] >= 0) & (new_coords[~empty] < 1))
    for i, atoms in enumerate(crystals):
        reduced = decode(new_coords[i].numpy(), new_lattice[i].double().numpy())
        assert np.isclose(reduced.get_volume(), atoms.get_volume(), rtol=1e-4)
        np.testing.assert_allclose(_sorted_distances(reduced), _sorted_distances(atoms), atol=2e-3)


def test_reduce_basis_is_unimodular_and_keeps_handedness():
    g = torch.Generator().manual_seed(0)
    cell = torch.randn(20, 3, 3, generator=g, dtype=torch.float64) + 3 * torch.eye(3, dtype=torch.float64)
    cell[torch.linalg.det(cell) < 0] *= -1
    reduced, op = reduce_basis(cell)
    torch.testing.assert_close(reduced, op @ cell)
    torch.testing.assert_close(torch.linalg.det(op), torch.ones(20, dtype=torch.float64))
    assert torch.all(op == op.round())
    assert torch.all(torch.linalg.det(reduced) > 0)


def test_cellpar_of_inverts_cell_from_cellpar():
    lattice = torch.tensor([[3.0, 4.0, 5.0, 80.0, 95.0, 110.0], [5.0, 5.0, 5.0, 90.0, 90.0, 90.0]], dtype=torch.float64)
    torch.testing.assert_close(cellpar_of(cell_from_cellpar(lattice)), lattice)
