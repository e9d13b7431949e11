"""Cell volumes and minimum separations estimated from covalent radii (ASE's ``covalent_radii``).

Rule: the volume of a composition is ``PACKING * sum(4/3 * pi * r_cov**3)`` over its atoms.
``PACKING = 1.5`` is the median of ``V / sum(4/3 pi r_cov^3)`` over 600 random MP-20 training
structures (10th-90th percentile 1.1-3.0, so it is a starting point, not a prediction). The default
minimum separation of a pair is ``MINSEP_FACTOR * (r_i + r_j)``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from ase.data import atomic_numbers, covalent_radii

PACKING = 1.5
MINSEP_FACTOR = 0.7


def covalent_radius(symbol: str) -> float:
    """ASE covalent radius of an element, in Angstrom."""
    return float(covalent_radii[atomic_numbers[symbol]])


def sphere_volume(counts: Mapping[str, int]) -> float:
    """Sum of ``4/3 pi r_cov^3`` over the atoms of ``counts`` (Angstrom^3)."""
    return float(sum(4.0 / 3.0 * np.pi * covalent_radius(s) ** 3 * int(n) for s, n in counts.items()))


def estimate_volume(counts: Mapping[str, int], *, packing: float = PACKING) -> float:
    """Cell volume (Angstrom^3) of ``counts`` from covalent radii times ``packing``."""
    return packing * sphere_volume(counts)


def default_minsep(a: str, b: str, *, factor: float = MINSEP_FACTOR) -> float:
    """Default minimum separation (Angstrom) of elements ``a`` and ``b``."""
    return factor * (covalent_radius(a) + covalent_radius(b))
