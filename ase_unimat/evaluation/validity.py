"""Structure validity of the CDVAE protocol: every interatomic distance >= 0.5 A and a cell volume >= 0.1 A^3.

Distances include periodic images, also an atom's own (which CDVAE's distance matrix leaves out).
Composition validity (SMACT charge balance) is :func:`ase_unimat.core.chemistry.composition_validity`.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from ase_unimat.core.representation import to_structure

MIN_DISTANCE = 0.5  # A
MIN_VOLUME = 0.1  # A^3


def min_interatomic_distance(structure: Any) -> float:
    """Shortest distance between any two atoms, periodic images (also an atom's own) included, in A."""
    structure = to_structure(structure)
    # Shortest non-zero lattice vector: search small combinations of the LLL-reduced basis.
    basis = structure.lattice.get_lll_reduced_lattice().matrix  # (3, 3)
    shifts = np.array([s for s in itertools.product((-1, 0, 1), repeat=3) if any(s)])  # (26, 3)
    self_image = float(np.linalg.norm(shifts @ basis, axis=1).min())
    if len(structure) < 2:
        return self_image
    dist = structure.distance_matrix  # (n, n) minimum-image distances
    dist = dist + np.diag(np.full(len(structure), np.inf))
    return float(min(dist.min(), self_image))


def structure_validity(structure: Any, *, min_distance: float = MIN_DISTANCE, min_volume: float = MIN_VOLUME) -> bool:
    """True when the cell volume is >= ``min_volume`` and no two atoms are closer than ``min_distance``."""
    structure = to_structure(structure)
    volume = float(structure.volume)
    if not np.isfinite(volume) or volume < min_volume:
        return False
    if not np.all(np.isfinite(structure.frac_coords)):
        return False
    return min_interatomic_distance(structure) >= min_distance
