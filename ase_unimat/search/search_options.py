"""What a :class:`~ase_unimat.search.search.Search` is given, checked before anything runs.

:func:`search_target` turns a formula, element counts or an AIRSS ``.cell`` file into the counts of
one formula unit and the default formula units; :func:`parse_formula_units`, :func:`unimat_strengths`,
:func:`whole_number` and :func:`relax_settings` check the other options. A mistake is a
:class:`SearchError` naming the option (a bad formula stays a
:class:`~ase_unimat.core.formula.FormulaError`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ase_unimat.core import formula as formula_module
from ase_unimat.core.formula import FormulaError, format_formula, parse_formula
from ase_unimat.search.buildcell import read_cell
from ase_unimat.search.relax import RelaxSettings


class SearchError(ValueError):
    """Options of a search that cannot work (the message says which and why)."""


def parse_formula_units(value: int | Sequence[int] | str) -> tuple[int, int]:
    """:func:`ase_unimat.core.formula.parse_formula_units`, raising :class:`SearchError`."""
    try:
        return formula_module.parse_formula_units(value)
    except FormulaError as err:
        raise SearchError(str(err)) from None


def whole_number(value: Any, what: str, *, minimum: int) -> int:
    """``value`` as an int >= ``minimum`` (0 or 1); else :class:`SearchError` ("``what`` must be a ... integer")."""
    if isinstance(value, bool) or int(value) != value or value < minimum:
        kind = "positive" if minimum == 1 else "non-negative"
        raise SearchError(f"{what} must be a {kind} integer, got {value!r}")
    return int(value)


def relax_settings(
    pressure: float, fmax: float, max_steps: int, optimizer: str, time_limit: float | None
) -> RelaxSettings:
    """The first level's :class:`~ase_unimat.search.relax.RelaxSettings`, a bad value raising :class:`SearchError`."""
    try:
        return RelaxSettings(
            pressure=float(pressure),
            fmax=float(fmax),
            max_steps=int(max_steps),
            optimizer=str(optimizer).upper(),
            time_limit=None if time_limit is None else float(time_limit),
        )
    except ValueError as err:
        raise SearchError(str(err)) from None


def unimat_strengths(value: float | Sequence[float] | None) -> tuple[float, ...] | None:
    """``unimat_strength`` as a tuple of levels in (0, 1] (None stays None)."""
    if value is None:
        return None
    levels = (value,) if isinstance(value, (int, float)) else tuple(value)
    try:
        levels = tuple(float(level) for level in levels)
    except (TypeError, ValueError):
        raise SearchError(f"unimat strength must be numbers in (0, 1], got {value!r}") from None
    if not levels or not all(0.0 < level <= 1.0 for level in levels):
        raise SearchError(f"unimat strength must be numbers in (0, 1], got {value!r}")
    return levels


def search_target(formula: Any) -> tuple[Path | None, dict[str, int], tuple[int, int] | None]:
    """(cell file or None, counts of one formula unit, default formula units) of ``formula``."""
    if isinstance(formula, Path) or (isinstance(formula, str) and formula.strip().lower().endswith(".cell")):
        path = Path(formula)
        if not path.is_file():
            raise SearchError(f"seed file {path} not found")

        spec = read_cell(path, nform=1)  # any other mistake in the file is raised here
        try:
            nform = read_cell(path).nform
        except ValueError:  # a #NFORM range: the caller must give the formula units
            return path, dict(spec.seed_counts), None
        return path, dict(spec.seed_counts), (nform, nform)
    if isinstance(formula, Mapping):
        counts = {str(k): int(v) for k, v in formula.items()}
        if min(counts.values(), default=0) < 1:
            raise FormulaError(f"element counts must be positive, got {counts}")
        parse_formula(format_formula(counts))  # validates element symbols
        return None, counts, (1, 4)
    if formula is None:
        raise SearchError("give a formula (e.g. 'Mg2SiO4') or an AIRSS .cell seed file")
    return None, parse_formula(str(formula)), (1, 4)
