"""Formula parsing, reduction and the composition grid."""

from __future__ import annotations

import numpy as np
import pytest

from ase_unimat.core.formula import (
    FormulaError,
    anonymized_formula,
    composition_grid,
    counts_from_grid,
    format_formula,
    parse_formula,
    reduce_counts,
    reduced_formula,
)
from ase_unimat.core.periodic_table import cell_of


@pytest.mark.parametrize(
    ("formula", "units", "expected"),
    [
        ("Mg2SiO4", 1, {"Mg": 2, "Si": 1, "O": 4}),
        ("Mg2SiO4", 2, {"Mg": 4, "Si": 2, "O": 8}),
        ("Mg2 Si O4", 1, {"Mg": 2, "Si": 1, "O": 4}),
        ("Ca(OH)2", 1, {"Ca": 1, "O": 2, "H": 2}),
        ("Ca3(PO4)2", 1, {"Ca": 3, "P": 2, "O": 8}),
        ("K4(Fe(CN)6)", 1, {"K": 4, "Fe": 1, "C": 6, "N": 6}),
        ("NaClNa", 1, {"Na": 2, "Cl": 1}),
        ("C", 3, {"C": 3}),
        ("Og2Lr", 1, {"Og": 2, "Lr": 1}),
    ],
)
def test_parse_formula(formula, units, expected):
    assert parse_formula(formula, formula_units=units) == expected


def test_parse_formula_keeps_order_of_first_appearance():
    assert list(parse_formula("SiO2Mg")) == ["Si", "O", "Mg"]


@pytest.mark.parametrize(
    ("formula", "message"),
    [
        ("", "empty formula"),
        ("   ", "empty formula"),
        ("Xx2O", "unknown element 'Xx'"),
        ("X", "unknown element 'X'"),
        ("Mg0O", "zero count for Mg"),
        ("NaCl0.5", "fractional counts"),
        ("Li.5CoO2", "fractional counts"),
        ("Fe2(O1.5)2", "fractional counts"),
        ("Ca(OH", r"unbalanced '\('"),
        ("CaOH)2", r"unbalanced '\)'"),
        ("mg2O", "cannot parse formula"),
        ("Mg2-O", "cannot parse formula"),
        ("()", "no elements"),
    ],
)
def test_parse_formula_errors(formula, message):
    with pytest.raises(FormulaError, match=message):
        parse_formula(formula)


@pytest.mark.parametrize("units", [0, -1, 1.5, True])
def test_formula_units_must_be_positive_integers(units):
    with pytest.raises(FormulaError, match="formula units must be a positive integer"):
        parse_formula("NaCl", formula_units=units)


def test_formula_error_is_a_value_error():
    assert issubclass(FormulaError, ValueError)


def test_reduce_and_format():
    assert reduce_counts({"Mg": 4, "O": 4}) == ({"Mg": 1, "O": 1}, 4)
    assert reduce_counts({"Mg": 4, "Si": 2, "O": 8}) == ({"Mg": 2, "Si": 1, "O": 4}, 2)
    assert reduced_formula({"O": 8, "Mg": 4, "Si": 2}) == "Mg2O4Si"
    assert format_formula({"H": 4, "C": 1, "O": 1}) == "CH4O"
    assert format_formula({"O": 2, "C": 1}) == "CO2"
    assert anonymized_formula({"Mg": 4, "Si": 2, "O": 8}) == "AB2C4"
    with pytest.raises(FormulaError, match="positive integers"):
        reduce_counts({"Mg": 0})
    with pytest.raises(FormulaError):
        reduce_counts({})


def test_composition_grid_round_trip():
    grid = composition_grid("Mg2SiO4")
    assert grid.shape == (9, 18) and grid.sum() == 7
    assert grid[cell_of(12)] == 2 and grid[cell_of(14)] == 1 and grid[cell_of(8)] == 4
    assert counts_from_grid(grid) == {"O": 4, "Mg": 2, "Si": 1}
    assert np.array_equal(composition_grid({"La": 1, "Lu": 2}), composition_grid("LaLu2"))
    with pytest.raises(FormulaError, match="unknown element"):
        composition_grid({"Xx": 1})
    with pytest.raises(ValueError, match="shape"):
        counts_from_grid(np.zeros((9, 17)))
