"""Issue 16, item 13: a formula beyond the model's largest training cell is refused in one line."""

from __future__ import annotations

import pytest
from ase_unimat.cli.airss import main
from click.testing import CliRunner

from ase_unimat.core.formula import FormulaError
from ase_unimat.generation import generate


def test_generate_refuses_more_atoms_than_the_model_was_trained_on():
    with pytest.raises(FormulaError, match="30 atoms"):
        generate("Cu15Au15", n=1, steps=2, device="cpu")


def test_unimat_airss_refuses_it_in_one_line(tmp_path):
    out = tmp_path / "run"
    args = [
        "--formula",
        "Cu15Au15",
        "--seeds",
        "unimat",
        "--formula-units",
        "1",
        "-n",
        "1",
        "--calculator",
        "emt",
        "--out",
        str(out),
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "30 atoms" in lines[0], result.output
