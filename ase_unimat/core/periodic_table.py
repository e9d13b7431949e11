"""The 9 x 18 periodic-table grid that indexes a UniMat tensor.

Rows 0-6 are periods 1-7 and columns 0-17 are groups 1-18, as in the usual table. The two f-block
series get rows of their own: row 7 holds the lanthanides La-Lu (Z = 57-71) and row 8 the
actinides Ac-Lr (Z = 89-103), each in columns 2-16, i.e. directly under groups 3-17. We keep all
fifteen members of a series together in one row (rather than putting La/Ac or Lu/Lr in group 3 of
periods 6/7) so that chemically similar neighbours along a series stay adjacent on the grid, which
is what a convolution over the grid exploits; the group-3 cells of periods 6 and 7 are therefore
empty. Every element Z = 1-118 has exactly one cell.
"""

from __future__ import annotations

import functools

import numpy as np

N_ROWS = 9
N_COLS = 18
GRID_SHAPE = (N_ROWS, N_COLS)
MAX_Z = 118

#: (Z_first, Z_last, row, first column) for each contiguous run of elements on the grid.
_RUNS = (
    (1, 1, 0, 0), (2, 2, 0, 17),
    (3, 4, 1, 0), (5, 10, 1, 12),
    (11, 12, 2, 0), (13, 18, 2, 12),
    (19, 36, 3, 0),
    (37, 54, 4, 0),
    (55, 56, 5, 0), (57, 71, 7, 2), (72, 86, 5, 3),
    (87, 88, 6, 0), (89, 103, 8, 2), (104, 118, 6, 3),
)


def _build_tables() -> tuple[np.ndarray, np.ndarray]:
    z_to_cell = np.full((MAX_Z + 1, 2), -1, dtype=np.int64)  # (119, 2): row, column; -1 for Z = 0
    cell_to_z = np.zeros(GRID_SHAPE, dtype=np.int64)  # (9, 18): 0 for an empty cell
    for z_first, z_last, row, col in _RUNS:
        for offset, z in enumerate(range(z_first, z_last + 1)):
            z_to_cell[z] = (row, col + offset)
            cell_to_z[row, col + offset] = z
    return z_to_cell, cell_to_z


Z_TO_CELL, CELL_TO_Z = _build_tables()
Z_TO_CELL.setflags(write=False)
CELL_TO_Z.setflags(write=False)
#: (9, 18) bool mask of cells that hold an element.
OCCUPIABLE = CELL_TO_Z > 0
OCCUPIABLE.setflags(write=False)


def cell_of(z: int) -> tuple[int, int]:
    """Grid cell (row, column) of atomic number ``z`` (1-118)."""
    if not 1 <= int(z) <= MAX_Z:
        raise KeyError(f"atomic number {z} is outside the periodic-table grid (1-{MAX_Z})")
    row, col = Z_TO_CELL[int(z)]
    return int(row), int(col)


def z_at(row: int, col: int) -> int:
    """Atomic number in grid cell (row, column), or 0 where the cell is empty."""
    return int(CELL_TO_Z[row, col])


@functools.cache
def _ase_tables() -> tuple[list[str], dict[str, int]]:
    # ase is imported on first use: the networks read this grid and must not pull in ase (contract).
    from ase.data import atomic_numbers, chemical_symbols

    return chemical_symbols, atomic_numbers


def symbol_to_z(symbol: str) -> int:
    """Atomic number of a chemical symbol; KeyError for an unknown one (or the dummy ``X``)."""
    z = _ase_tables()[1].get(symbol, 0)
    if z < 1 or z > MAX_Z:
        raise KeyError(f"unknown element {symbol!r}")
    return z


def z_to_symbol(z: int) -> str:
    """Chemical symbol of atomic number ``z``."""
    cell_of(z)
    return _ase_tables()[0][int(z)]
