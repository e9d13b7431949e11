"""Issue 16, item 11: ``unimat-eval --csp --limit N`` limits the references, never their predictions."""

from __future__ import annotations

import json

import pandas as pd
from ase.io import write
from ase_unimat.cli.eval import main
from click.testing import CliRunner
from pymatgen.core import Lattice, Structure
from pymatgen.io.ase import AseAtomsAdaptor


def rocksalt(a: float) -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_limit_keeps_every_prediction_of_the_kept_references(tmp_path):
    refs = tmp_path / "ref.csv"
    sizes = [5.5, 5.6, 5.7, 5.8]
    pd.DataFrame(
        {"material_id": [f"m-{i}" for i in range(4)], "cif": [rocksalt(a).to(fmt="cif") for a in sizes]}
    ).to_csv(refs)
    generated = tmp_path / "preds.extxyz"
    write(generated, [AseAtomsAdaptor.get_atoms(rocksalt(a)) for a in sizes for _ in range(2)])  # k = 2, by order
    out_json = tmp_path / "m.json"
    args = [str(generated), "--reference", str(refs), "--csp", "--k", "2", "--limit", "2", "--out", str(out_json)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    csp = json.loads(out_json.read_text())["csp"]
    assert csp["match_rate_at_1"] == 1.0, csp


def test_without_smact_is_one_line_with_the_install_hint(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "smact", None)  # import smact now raises ImportError
    monkeypatch.setitem(sys.modules, "smact.screening", None)
    generated = tmp_path / "g.extxyz"
    write(generated, [AseAtomsAdaptor.get_atoms(rocksalt(5.6))])
    result = CliRunner().invoke(
        main, [str(generated), "--reference", str(generated), "--out", str(tmp_path / "m.json")]
    )
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit), result.exception
    assert "pip install" in result.output and "Traceback" not in result.output
    assert [line for line in result.output.splitlines() if line.startswith("Error:")]
