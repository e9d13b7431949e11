"""The error of the calculator modules: :class:`CalculatorError`, and how a foreign error is quoted in it.

It lives apart so that :mod:`~ase_unimat.search.calculators` (the entry), the user's factories
(:mod:`~ase_unimat.search.calc_factory`) and Quantum ESPRESSO (:mod:`~ase_unimat.search.calc_espresso`)
raise the same class without importing each other.
"""

from __future__ import annotations


class CalculatorError(ValueError):
    """An unknown, unavailable or misconfigured calculator."""


def one_line(err: BaseException) -> str:
    """``err``'s message on one line, at most 300 characters (the user's code may print anything)."""
    text = " ".join(str(err).split())
    return text[:300] if text else "(no message)"
