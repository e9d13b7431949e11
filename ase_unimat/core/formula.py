"""Chemical formulas: parsing, formula units and the (9, 18) composition count grid.

Everything in ase-unimat that takes a formula (``generate``, ``unimat-airss``, templates, the
benchmarks) parses it here, so ``"Mg2SiO4"``, ``"Ca(OH)2"`` and ``"Mg2 Si O4"`` mean the same thing
everywhere and a bad one gets the same message.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from functools import reduce

import numpy as np

from ase_unimat.core.periodic_table import CELL_TO_Z, GRID_SHAPE, cell_of, symbol_to_z, z_to_symbol

_TOKEN = re.compile(r"([A-Z][a-z]?)(\d*)|(\()|(\))(\d*)|(\s+)")


class FormulaError(ValueError):
    """A chemical formula that cannot be parsed or does not describe a crystal we can build."""


def parse_formula(formula: str, *, formula_units: int = 1) -> dict[str, int]:
    """Element counts of ``formula`` times ``formula_units``.

    Parameters
    ----------
    formula
        Integer-count formula such as ``"Mg2SiO4"`` or ``"Ca(OH)2"``; whitespace is ignored.
    formula_units
        Multiply every count by this (a cell of that many formula units).

    Returns
    -------
    dict
        Element symbol -> count, in order of first appearance.
    """
    if not isinstance(formula, str) or not formula.strip():
        raise FormulaError("empty formula")
    if isinstance(formula_units, bool) or int(formula_units) != formula_units or formula_units < 1:
        raise FormulaError(f"formula units must be a positive integer, got {formula_units!r}")
    if re.search(r"\d*\.\d", formula):
        raise FormulaError(f"fractional counts in formula {formula!r}: a cell holds whole atoms; give integer counts "
                           "(e.g. Li0.5CoO2 as LiCo2O4)")
    stack: list[dict[str, int]] = [{}]
    pos = 0
    while pos < len(formula):
        match = _TOKEN.match(formula, pos)
        if match is None:
            raise FormulaError(f"cannot parse formula {formula!r} at {formula[pos:]!r}")
        symbol, count, opening, closing, group_count, _space = match.groups()
        if symbol:
            try:
                symbol_to_z(symbol)
            except KeyError:
                raise FormulaError(f"unknown element {symbol!r} in formula {formula!r}") from None
            n = int(count) if count else 1
            if n == 0:
                raise FormulaError(f"zero count for {symbol} in formula {formula!r}")
            stack[-1][symbol] = stack[-1].get(symbol, 0) + n
        elif opening:
            stack.append({})
        elif closing:
            if len(stack) == 1:
                raise FormulaError(f"unbalanced ')' in formula {formula!r}")
            group = stack.pop()
            n = int(group_count) if group_count else 1
            for sym, c in group.items():
                stack[-1][sym] = stack[-1].get(sym, 0) + c * n
        pos = match.end()
    if len(stack) != 1:
        raise FormulaError(f"unbalanced '(' in formula {formula!r}")
    if not stack[0]:
        raise FormulaError(f"no elements in formula {formula!r}")
    return {sym: c * int(formula_units) for sym, c in stack[0].items()}


def reduce_counts(counts: Mapping[str, int]) -> tuple[dict[str, int], int]:
    """Reduced counts and the number of formula units: ``{"Mg": 4, "O": 4}`` -> ``({"Mg": 1, "O": 1}, 4)``."""
    values = [int(c) for c in counts.values()]
    if not values or min(values) < 1:
        raise FormulaError(f"counts must be positive integers, got {dict(counts)}")
    units = reduce(math.gcd, values)
    return {sym: int(c) // units for sym, c in counts.items()}, units


def format_formula(counts: Mapping[str, int]) -> str:
    """Hill-ordered formula string (C, H first when carbon is present, otherwise alphabetical)."""
    symbols = sorted(counts)
    if "C" in counts:
        symbols = ["C"] + (["H"] if "H" in counts else []) + [s for s in symbols if s not in ("C", "H")]
    return "".join(f"{s}{counts[s] if counts[s] != 1 else ''}" for s in symbols)


def reduced_formula(counts: Mapping[str, int]) -> str:
    """Hill-ordered formula of the reduced counts."""
    return format_formula(reduce_counts(counts)[0])


def anonymized_formula(counts: Mapping[str, int]) -> str:
    """Stoichiometry pattern of the reduced counts, e.g. Mg2SiO4 -> ``AB2C4`` (counts ascending)."""
    reduced, _ = reduce_counts(counts)
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    ordered = sorted(reduced.values())
    return "".join(f"{letters[i]}{c if c != 1 else ''}" for i, c in enumerate(ordered))


def composition_grid(counts: Mapping[str, int] | str) -> np.ndarray:
    """(9, 18) int64 grid of atom counts per element cell, from counts or a formula string."""
    if isinstance(counts, str):
        counts = parse_formula(counts)
    grid = np.zeros(GRID_SHAPE, dtype=np.int64)
    for symbol, n in counts.items():
        try:
            row, col = cell_of(symbol_to_z(symbol))
        except KeyError as err:
            raise FormulaError(str(err.args[0])) from None
        grid[row, col] += int(n)
    return grid


def counts_from_grid(grid: np.ndarray) -> dict[str, int]:
    """Element counts (ordered by atomic number) from a (9, 18) count grid."""
    grid = np.asarray(grid)
    if grid.shape != GRID_SHAPE:
        raise ValueError(f"composition grid must have shape {GRID_SHAPE}, got {grid.shape}")
    rows, cols = np.nonzero(grid)
    pairs = sorted((int(CELL_TO_Z[r, c]), int(round(float(grid[r, c])))) for r, c in zip(rows, cols, strict=True))
    return {z_to_symbol(z): n for z, n in pairs if n > 0}


def formula_label(counts: Mapping[str, int]) -> str:
    """Cell formula in the counts' own element order: ``{"Mg": 2, "Si": 1, "O": 4}`` -> ``"Mg2SiO4"``."""
    return "".join(f"{sym}{n if n != 1 else ''}" for sym, n in counts.items())


def parse_formula_units(value: int | Sequence[int] | str) -> tuple[int, int]:
    """``2`` -> ``(2, 2)``, ``(1, 4)`` or ``"1-4"`` -> ``(1, 4)``; raises :class:`FormulaError` otherwise."""
    try:
        if isinstance(value, str):
            match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", value)
            if match is None:
                raise ValueError(value)
            bounds = (int(match[1]), int(match[2] or match[1]))
        elif isinstance(value, int):
            bounds = (value, value)
        else:
            low, high = value
            bounds = (int(low), int(high))
    except (TypeError, ValueError):
        raise FormulaError(f"formula units must be an integer or a range like 1-4, got {value!r}") from None
    if bounds[0] < 1 or bounds[1] < bounds[0] or bounds[1] > 64:
        raise FormulaError(f"formula units range must satisfy 1 <= low <= high <= 64, got {bounds[0]}-{bounds[1]}")
    return bounds
