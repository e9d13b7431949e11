"""The error of the calculator modules: :class:`CalculatorError`.

It lives apart so that :mod:`~ase_unimat.search.calculators` (the entry), the user's factories
(:mod:`~ase_unimat.search.calc_factory`) and Quantum ESPRESSO (:mod:`~ase_unimat.search.calc_espresso`)
raise the same class without importing each other.
"""

from __future__ import annotations


class CalculatorError(ValueError):
    """An unknown, unavailable or misconfigured calculator."""
