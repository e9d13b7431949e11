"""Geometry of one cell: element counts and the shortest interatomic distance (periodic images included).

The one home of these helpers; the relaxation, ranking, stability and generation code import them.
"""

from __future__ import annotations

import itertools

import numpy as np
from ase import Atoms


def atom_counts(atoms: Atoms) -> dict[str, int]:
    """Element counts of one cell, in order of first appearance: ``{"Mg": 2, "Si": 1, "O": 4}``."""
    counts: dict[str, int] = {}
    for symbol in atoms.get_chemical_symbols():
        counts[symbol] = counts.get(symbol, 0) + 1
    return counts


def shortest_distance(atoms: Atoms) -> float:
    """Shortest distance between two atoms, periodic images included (Å).

    Minimum image over the 27 neighbouring cells of the wrapped fractional differences: exact for any
    cell that is not extremely skewed, and ~10x cheaper than a neighbour list on small cells.
    """
    n = len(atoms)
    frac = atoms.get_scaled_positions(wrap=False)  # (N, 3)
    diff = frac[:, None, :] - frac[None, :, :]  # (N, N, 3)
    diff -= np.round(diff)
    vectors = (diff[:, :, None, :] + _SHIFTS[None, None]) @ atoms.cell.array  # (N, N, 27, 3)
    distances = np.sqrt((vectors**2).sum(-1))  # (N, N, 27)
    distances[np.arange(n), np.arange(n), 13] = np.inf  # an atom and itself (shift 0, 0, 0)
    return float(distances.min())


_SHIFTS = np.array(list(itertools.product((-1, 0, 1), repeat=3)), dtype=float)  # (27, 3), index 13 = (0, 0, 0)
