"""The 9 x 18 periodic-table grid."""

from __future__ import annotations

import numpy as np
import pytest
from ase.data import chemical_symbols

from ase_unimat.core.periodic_table import (
    CELL_TO_Z,
    GRID_SHAPE,
    MAX_Z,
    OCCUPIABLE,
    Z_TO_CELL,
    cell_of,
    symbol_to_z,
    z_at,
    z_to_symbol,
)


def test_every_element_has_its_own_cell():
    cells = [cell_of(z) for z in range(1, MAX_Z + 1)]
    assert len(set(cells)) == MAX_Z
    assert all(z_at(*cell_of(z)) == z for z in range(1, MAX_Z + 1))
    assert OCCUPIABLE.sum() == MAX_Z
    assert GRID_SHAPE == (9, 18) and CELL_TO_Z.shape == GRID_SHAPE and Z_TO_CELL.shape == (MAX_Z + 1, 2)


@pytest.mark.parametrize(
    ("symbol", "cell"),
    [("H", (0, 0)), ("He", (0, 17)), ("Li", (1, 0)), ("B", (1, 12)), ("Ne", (1, 17)), ("Fe", (3, 7)),
     ("Cs", (5, 0)), ("Ba", (5, 1)), ("Hf", (5, 3)), ("Rn", (5, 17)), ("La", (7, 2)), ("Lu", (7, 16)), ("Ac", (8, 2)),
     ("Lr", (8, 16)), ("Rf", (6, 3)), ("Og", (6, 17))],
)
def test_documented_positions(symbol, cell):
    assert cell_of(symbol_to_z(symbol)) == cell


def test_group3_of_periods_6_and_7_is_empty():
    assert z_at(5, 2) == 0 and z_at(6, 2) == 0
    assert not OCCUPIABLE[5, 2] and not OCCUPIABLE[6, 2]


@pytest.mark.parametrize("z", [0, -1, MAX_Z + 1])
def test_cell_of_rejects_atomic_numbers_outside_the_table(z):
    with pytest.raises(KeyError, match="outside the periodic-table grid"):
        cell_of(z)


@pytest.mark.parametrize("symbol", ["X", "Xx", "", "fe"])
def test_symbol_to_z_rejects_unknown_symbols(symbol):
    with pytest.raises(KeyError, match="unknown element"):
        symbol_to_z(symbol)


def test_symbols_round_trip():
    assert [z_to_symbol(z) for z in range(1, MAX_Z + 1)] == chemical_symbols[1 : MAX_Z + 1]
    assert np.array_equal(np.sort(CELL_TO_Z[OCCUPIABLE]), np.arange(1, MAX_Z + 1))
