"""Tests of the unimat-sample command (cli/sample.py) through click's CliRunner."""

from __future__ import annotations

import pytest
from ase.io import read
from ase_unimat.cli.sample import main
from click.testing import CliRunner


def test_help_is_instant_and_has_examples():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "Examples:" in result.output and "unimat-sample --formula" in result.output


@pytest.mark.parametrize("name", ["out.extxyz", "out.cif"])
def test_writes_multi_structure_files(tmp_path, checkpoint, name):
    out = tmp_path / name
    args = ["--model", str(checkpoint), "--formula", "MgO", "--formula-units", "2", "-n", "3", "--steps", "3",
            "--device", "cpu", "--out", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    structures = read(out, index=":")
    assert len(structures) == 3
    assert all(a.get_chemical_formula() == "Mg2O2" for a in structures)


def test_writes_res_folder(tmp_path, checkpoint):
    out = tmp_path / "seeds"
    args = ["--model", str(checkpoint), "--formula", "NaCl", "-n", "2", "--seed", "7", "--steps", "2",
            "--device", "cpu", "--out", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    files = sorted(out.glob("*.res"))
    assert [f.name for f in files] == ["NaCl-unimat-000007.res", "NaCl-unimat-000008.res"]
    assert files[0].read_text().startswith("TITL NaCl-unimat-000007 0.0")
    assert read(files[0]).get_chemical_formula() == "ClNa"


def test_user_mistakes_are_one_line_errors(tmp_path, checkpoint):
    runner = CliRunner()
    bad_formula = runner.invoke(main, ["--model", str(checkpoint), "--formula", "Qq", "--out", str(tmp_path / "a.cif")])
    assert bad_formula.exit_code != 0 and "unknown element" in bad_formula.output
    assert "Traceback" not in bad_formula.output
    bad_suffix = runner.invoke(main, ["--model", str(checkpoint), "--formula", "NaCl", "--out", str(tmp_path / "a.pdb")])
    assert bad_suffix.exit_code != 0 and "cannot tell the format" in bad_suffix.output
    no_model = runner.invoke(main, ["--model", str(tmp_path / "none.pt"), "--formula", "NaCl", "--out", str(tmp_path / "a.cif")])
    assert no_model.exit_code != 0 and "not found" in no_model.output
