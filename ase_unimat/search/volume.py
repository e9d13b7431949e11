"""Cell volumes and minimum separations of random seeds.

Volume: ``sum_e n_e v_e`` over the atoms of a composition, ``v_e`` the per-element volume of
``element_volumes.json`` (fitted to the 77,769 MP structures that the shipped model trained on,
:mod:`ase_unimat.search.volume_fit`). On the held-out ``mp_20/test`` structures it predicts the
volume with a median error of 7 % (10th-90th percentile of true / predicted 0.88-1.15). Elements the
table lacks (noble gases, the heaviest actinides) take ``PACKING * 4/3 pi r_cov^3`` from ASE's
covalent radii, the earlier rule for every element: ``PACKING = 1.5`` is the median of
``V / sum(4/3 pi r_cov^3)`` over 600 MP-20 training structures, but its 10th-90th percentile is
0.73-1.99 times the true volume on ``mp_20/test`` (median error 25 %), and it squeezes open covalent
phases: Si at 8.6 A^3/atom against diamond's 20.0, where no random Si2 seed relaxed to diamond with
CHGNet in 20 (the table: 15.1 A^3/atom, 4 of 20). The default minimum separation of a pair is
``MINSEP_FACTOR * (r_i + r_j)``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from importlib import resources

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


@functools.cache
def element_volumes() -> dict[str, float]:
    """The shipped per-element volumes ``{symbol: A^3 per atom}`` (read once)."""
    text = resources.files("ase_unimat.search").joinpath("element_volumes.json").read_text()
    return {str(k): float(v) for k, v in json.loads(text)["volumes"].items()}


def element_volume(symbol: str) -> float:
    """Volume per atom (Angstrom^3) of ``symbol``: the fitted table, else ``PACKING`` covalent spheres."""
    table = element_volumes()
    if symbol in table:
        return table[symbol]
    return PACKING * sphere_volume({symbol: 1})


def estimate_volume(counts: Mapping[str, int], *, packing: float | None = None) -> float:
    """Cell volume (Angstrom^3) of ``counts``.

    ``packing=None``: the per-element table (:func:`element_volume`); a number: the covalent-sphere
    rule ``packing * sum(4/3 pi r_cov^3)`` for every element.
    """
    if packing is not None:
        return packing * sphere_volume(counts)
    return float(sum(element_volume(s) * int(n) for s, n in counts.items()))


def default_minsep(a: str, b: str, *, factor: float = MINSEP_FACTOR) -> float:
    """Default minimum separation (Angstrom) of elements ``a`` and ``b``."""
    return factor * (covalent_radius(a) + covalent_radius(b))
