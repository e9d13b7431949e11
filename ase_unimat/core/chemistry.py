"""Chemistry of a composition: SMACT charge balance and electronegativity order (CDVAE's composition validity).

In core so that generation (a charge-balance filter on de novo compositions) and evaluation (the
composition-validity metric) share one implementation. ``smact`` is optional
(``pip install '.[metrics]'``) and imported only when a check runs.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from ase_unimat.core.representation import to_structure

_MAX_OXIDATION_COMBINATIONS = 10**7  # CDVAE gives up (invalid) above this many combinations


def _element_counts(obj: Any) -> dict[str, int]:
    """Integer element counts of a Structure/Atoms/Composition/formula string/mapping."""
    from pymatgen.core import Composition  # pymatgen is slow to import

    if isinstance(obj, Mapping):
        composition = Composition({str(k): v for k, v in obj.items()})
    elif isinstance(obj, str):
        composition = Composition(obj)
    elif isinstance(obj, Composition):
        composition = obj
    else:
        composition = to_structure(obj).composition
    counts = {el.symbol: amount for el, amount in composition.element_composition.items()}
    if not counts:
        raise ValueError("empty composition")
    rounded = {sym: round(n) for sym, n in counts.items()}
    if any(abs(counts[sym] - rounded[sym]) > 1e-6 or rounded[sym] < 1 for sym in counts):
        raise ValueError(f"composition {composition} does not have positive integer counts")
    return rounded


def composition_validity(composition: Any, *, use_pauling_test: bool = True, include_alloys: bool = True) -> bool:
    """SMACT validity as CDVAE's ``smact_validity``: charge neutral and electronegativity ordered.

    Parameters
    ----------
    composition
        Structure, Atoms, pymatgen Composition, formula string or ``{symbol: count}``.
    use_pauling_test
        Also require cations to be less electronegative than anions.
    include_alloys
        Count compositions made only of metals as valid.
    """
    import smact  # optional: pip install '.[metrics]'
    from smact.screening import pauling_test  # optional: pip install '.[metrics]'

    counts = _element_counts(composition)
    symbols = sorted(counts)  # CDVAE orders elements by atomic number; the test is order-independent
    if len(symbols) == 1:
        return True
    if include_alloys and all(sym in smact.metals for sym in symbols):
        return True
    stoich = np.array([counts[s] for s in symbols], dtype=np.int64)
    stoich = stoich // np.gcd.reduce(stoich)
    elements = [smact.Element(s) for s in symbols]
    oxidation_lists = [e.oxidation_states_smact14 or [] for e in elements]
    if math.prod(len(ox) for ox in oxidation_lists) > _MAX_OXIDATION_COMBINATIONS:
        return False
    electronegativities = [e.pauling_eneg for e in elements]
    for states in itertools.product(*oxidation_lists):
        if int(np.dot(states, stoich)) != 0:
            continue
        if not use_pauling_test:
            return True
        try:
            if pauling_test(states, electronegativities):
                return True
        except TypeError:  # an element without a Pauling electronegativity: accepted, as in CDVAE
            return True
    return False


# ------------------------------------------------------------------------------------- fingerprints
