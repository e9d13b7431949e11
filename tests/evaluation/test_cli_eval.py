"""``unimat-eval`` through click's CliRunner: files in, metrics JSON out, one-line errors."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from ase.io import write
from ase_unimat.cli.eval import main
from click.testing import CliRunner
from pymatgen.core import Lattice, Structure
from pymatgen.io.ase import AseAtomsAdaptor


def rocksalt(a: float = 5.64) -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def cscl(a: float = 4.1) -> Structure:
    return Structure(Lattice.cubic(a), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


@pytest.fixture
def reference_csv(tmp_path):
    path = tmp_path / "ref.csv"
    pd.DataFrame({"material_id": ["m-1", "m-2"], "cif": [rocksalt().to(fmt="cif"), cscl().to(fmt="cif")]}).to_csv(path)
    return path


def test_help_has_examples():
    out = CliRunner().invoke(main, ["--help"])
    assert out.exit_code == 0 and "Examples:" in out.output and "--reference" in out.output


def test_eval_writes_metrics_json(tmp_path, reference_csv):
    overlapping = Structure(Lattice.cubic(5.0), ["Na", "Cl"], [[0, 0, 0], [0.04, 0, 0]])
    non_neutral = Structure(Lattice.cubic(5.0), ["Na", "Cl", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0, 0]])
    generated = tmp_path / "gen.extxyz"
    write(generated, [AseAtomsAdaptor.get_atoms(s) for s in (rocksalt(), overlapping, non_neutral)])
    out_json = tmp_path / "m.json"
    out = CliRunner().invoke(main, [str(generated), "--reference", str(reference_csv), "--out", str(out_json)])
    assert out.exit_code == 0, out.output
    metrics = json.loads(out_json.read_text())["generation"]
    assert metrics["n_generated"] == 3 and metrics["n_reference"] == 2
    assert metrics["struct_valid"] == pytest.approx(2 / 3) and metrics["comp_valid"] == pytest.approx(2 / 3)
    assert metrics["cov_recall"] == pytest.approx(0.5)  # rocksalt is covered, CsCl is not
    assert "generation:" in out.output


def test_eval_csp_from_a_folder_pairs_by_order(tmp_path, reference_csv):
    folder = tmp_path / "preds"
    folder.mkdir()
    write(folder / "a.cif", AseAtomsAdaptor.get_atoms(rocksalt(5.7)))  # a.cif predicts m-1, b.cif m-2
    write(folder / "b.cif", AseAtomsAdaptor.get_atoms(rocksalt()))  # wrong structure for CsCl
    out_json = tmp_path / "m.json"
    out = CliRunner().invoke(main, [str(folder), "--reference", str(reference_csv), "--csp", "--out", str(out_json)])
    assert out.exit_code == 0, out.output
    csp = json.loads(out_json.read_text())["csp"]
    assert csp["match_rate_at_1"] == 0.5 and csp["rms"][1] is None


def test_eval_user_errors_are_one_line(tmp_path, reference_csv):
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"x": [1]}).to_csv(bad)
    out = CliRunner().invoke(main, [str(reference_csv), "--reference", str(bad), "--out", str(tmp_path / "m.json")])
    assert out.exit_code != 0 and "has no 'cif' column" in out.output and "Traceback" not in out.output
    generated = tmp_path / "one.extxyz"
    write(generated, [AseAtomsAdaptor.get_atoms(rocksalt())] * 3)
    out = CliRunner().invoke(main, [str(generated), "--reference", str(reference_csv), "--csp", "--k", "2",
                                    "--out", str(tmp_path / "m.json")])  # fmt: skip
    assert out.exit_code != 0 and "k per reference" in out.output
