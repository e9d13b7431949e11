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
    cell that is not extremely skewed, and ~10x cheaper than a neighbour list on small cells. Rows
    of atoms are done in blocks of at most ``_BLOCK_FLOATS`` numbers, so memory stays bounded
    (~10 MB) however many atoms there are; time is N^2.
    """
    n = len(atoms)
    frac = atoms.get_scaled_positions(wrap=False)  # (N, 3)
    cell = atoms.cell.array
    rows = max(1, _BLOCK_FLOATS // (n * len(_SHIFTS) * 3))
    best = np.inf
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        diff = frac[start:stop, None, :] - frac[None, :, :]  # (R, N, 3)
        diff -= np.round(diff)
        vectors = (diff[:, :, None, :] + _SHIFTS[None, None]) @ cell  # (R, N, 27, 3)
        squared = np.einsum("rnkx,rnkx->rnk", vectors, vectors)  # (R, N, 27)
        own = np.arange(start, stop)
        squared[own - start, own, 13] = np.inf  # an atom and itself (shift 0, 0, 0)
        best = min(best, float(squared.min()))
    return float(np.sqrt(best))


_SHIFTS = np.array(list(itertools.product((-1, 0, 1), repeat=3)), dtype=float)  # (27, 3), index 13 = (0, 0, 0)
_BLOCK_FLOATS = 2**20  # numbers per block of shortest_distance (8 MB of float64)
