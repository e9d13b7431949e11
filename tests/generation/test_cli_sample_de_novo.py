"""unimat-sample without --formula (de novo), --spacegroup, and its one-line refusals (CliRunner)."""

from __future__ import annotations

import pytest
from ase.io import read
from ase_unimat.cli.sample import main
from click.testing import CliRunner


def test_de_novo_and_elements(checkpoint, tmp_path):
    out = tmp_path / "x.extxyz"
    common = ["--model", str(checkpoint), "--steps", "2", "--device", "cpu", "--out", str(out)]
    result = CliRunner().invoke(main, ["-n", "3", *common])
    assert result.exit_code == 0, result.output
    assert "wrote 3 structures de novo" in result.output
    assert [a.info["composition_source"] for a in read(out, ":")] == ["prior"] * 3
    result = CliRunner().invoke(main, ["-n", "2", "--elements", "Zn,S", "--charge-balanced", *common])
    assert result.exit_code == 0, result.output
    assert all(set(a.get_chemical_symbols()) == {"Zn", "S"} for a in read(out, ":"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--elements", "Li,Xx"], "unknown element symbol 'Xx'"),
        (["--elements", "Pu,O"], "Pu never appeared in this model's training data"),
        (["-n", "0"], "-n must be at least 1, got 0"),
        (["--formula", "NaCl", "--guidance", "-1"], "--guidance must be >= 0, got -1.0"),
        (["--formula", "NaCl", "--elements", "Na,Cl"], "give --formula or --elements, not both"),
        (["--formula", "NaCl", "--guidance", "2"], "no condition to guide"),
        (["--formula", "NaCl", "--spacegroup", "225"], "takes no space-group condition"),
        (["--formula", "NaCl", "--spacegroup", "300"], "--spacegroup must be a number 1-230"),
    ],
)
def test_bad_input_is_one_line(checkpoint, tmp_path, args, message):
    result = CliRunner().invoke(main, ["--model", str(checkpoint), "--steps", "2", "--device", "cpu",
                                       "--out", str(tmp_path / "x.extxyz"), *args])  # fmt: skip
    assert result.exit_code != 0
    assert result.output.strip().splitlines() == [f"Error: {result.output.strip().removeprefix('Error: ')}"]
    assert message in result.output
