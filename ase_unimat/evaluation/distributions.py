"""Distribution distances of the CDVAE protocol: Wasserstein-1 of density and of the number of elements.

``scipy.stats.wasserstein_distance`` (scipy is slow to import: loaded inside the functions) between a
generated set and a reference set, density in g/cm^3.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ase_unimat.core.representation import to_structure


def density_wasserstein(generated: Sequence[Any], reference: Sequence[Any]) -> float:
    """Wasserstein-1 distance between the densities (g/cm^3) of two sets of structures."""
    from scipy.stats import wasserstein_distance  # scipy is slow to import

    if not generated or not reference:
        raise ValueError("density distance needs non-empty generated and reference sets")
    gen = [float(to_structure(s).density) for s in generated]
    ref = [float(to_structure(s).density) for s in reference]
    return float(wasserstein_distance(gen, ref))


def num_elements_wasserstein(generated: Sequence[Any], reference: Sequence[Any]) -> float:
    """Wasserstein-1 distance between the numbers of distinct elements of two sets of structures."""
    from scipy.stats import wasserstein_distance  # scipy is slow to import

    if not generated or not reference:
        raise ValueError("element-count distance needs non-empty generated and reference sets")
    gen = [len(to_structure(s).composition.elements) for s in generated]
    ref = [len(to_structure(s).composition.elements) for s in reference]
    return float(wasserstein_distance(gen, ref))
