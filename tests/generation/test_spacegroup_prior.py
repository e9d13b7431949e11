"""Tests of ase_unimat.generation.spacegroups: space groups drawn per stoichiometry, with back-off."""

from __future__ import annotations

import numpy as np
import pytest

from ase_unimat.core.formula import composition_grid
from ase_unimat.generation.spacegroups import SpacegroupPrior, stoichiometry_keys


def _prior(min_count: int = 2) -> SpacegroupPrior:
    rows = [({"Na": 4, "Cl": 4}, 225)] * 3 + [({"K": 1, "Br": 1}, 221)] * 2 + [({"Ti": 1, "O": 2}, 136)] * 4
    rows += [({"Si": 8}, 227), ({"Mg": 2, "Si": 1, "O": 4}, -1)]
    grids = np.stack([composition_grid(c) for c, _ in rows])
    return SpacegroupPrior(grids, np.array([g for _, g in rows]), source="test", min_count=min_count)


def test_keys():
    assert stoichiometry_keys({"Mg": 4, "Si": 2, "O": 8}) == ((2, 4, 8), (1, 2, 4), 14)


@pytest.mark.parametrize(
    ("counts", "level", "numbers"),
    [
        ({"Na": 4, "Cl": 4}, "stoichiometry", [225]),  # the same cell counts
        ({"Li": 4, "F": 4}, "stoichiometry", [225]),  # any elements of that stoichiometry
        ({"Cs": 2, "I": 2}, "anonymous", [221, 225]),  # AB: 1-1 and 4-4 cells
        ({"Mg": 2, "F": 4}, "anonymous", [136]),  # AB2
        ({"Fe": 3, "P": 5}, "natoms", [225, 227]),  # 8 atoms: Si8 and Na4Cl4
        ({"Fe": 2, "P": 5}, "all", [136, 221, 225, 227]),
    ],
)
def test_back_off(counts, level, numbers):
    prior = _prior(min_count=1 if level == "natoms" else 2)
    got, probs, used = prior.distribution(counts)
    assert used == level
    assert set(got) <= set(numbers) and probs.sum() == pytest.approx(1.0)


def test_draw_is_reproducible_and_follows_the_distribution():
    prior = _prior()
    draws = [prior.draw({"Cs": 2, "I": 2}, seed)[0] for seed in range(200)]
    assert draws == [prior.draw({"Cs": 2, "I": 2}, seed)[0] for seed in range(200)]
    assert 0.45 < np.mean(np.array(draws) == 225) < 0.75  # 3 of 5 AB cells are 225


def test_missing_space_groups_are_left_out_and_needed():
    with pytest.raises(ValueError, match="no known space group"):
        SpacegroupPrior(np.zeros((2, 9, 18)), np.array([-1, 0]))
