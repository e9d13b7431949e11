"""ase_unimat.core.geometry: element counts and the shortest interatomic distance."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.neighborlist import neighbor_list

from ase_unimat.core.geometry import atom_counts, shortest_distance


@pytest.mark.parametrize("seed", range(5))
def test_shortest_distance_matches_a_neighbour_list(seed):
    rng = np.random.default_rng(seed)
    cell = np.eye(3) * 4.0 + rng.uniform(-1.0, 1.0, (3, 3))
    atoms = Atoms("Cu5", scaled_positions=rng.random((5, 3)), cell=cell, pbc=True)
    assert shortest_distance(atoms) == pytest.approx(neighbor_list("d", atoms, 8.0).min(), abs=1e-10)
    assert shortest_distance(bulk("Cu", "fcc", a=3.6)) == pytest.approx(3.6 / np.sqrt(2))


def test_atom_counts_keep_the_order_of_first_appearance():
    assert atom_counts(Atoms("OMg2OSi")) == {"O": 2, "Mg": 2, "Si": 1}
    assert list(atom_counts(Atoms("Mg2SiO4"))) == ["Mg", "Si", "O"]


@pytest.mark.parametrize("seed", range(20))
def test_exact_below_agrees_with_a_neighbour_list_on_skewed_cells(seed):
    # Strongly sheared cells (where the 27 neighbouring images are not enough) with a few atoms:
    # whenever a pair is closer than the threshold, the widened image range finds the same distance.
    rng = np.random.default_rng(100 + seed)
    cell = np.diag(rng.uniform(0.6, 3.0, 3))
    cell[1, 0] = rng.uniform(-8.0, 8.0)
    cell[2, :2] = rng.uniform(-8.0, 8.0, 2)
    atoms = Atoms("Cu3", scaled_positions=rng.random((3, 3)), cell=cell, pbc=True)
    threshold = 1.5
    listed = neighbor_list("d", atoms, threshold)
    found = shortest_distance(atoms, exact_below=threshold)
    if len(listed):
        assert found == pytest.approx(listed.min(), abs=1e-10)
    else:
        assert found >= threshold - 1e-12
