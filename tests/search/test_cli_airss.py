"""``unimat-airss``: a small EMT run, resume, report, database, and one-line errors for bad input."""

from __future__ import annotations

import csv

import pytest
from ase.db import connect
from ase_unimat.cli.airss import main
from click.testing import CliRunner

FAST = ["--seeds", "random", "--calc", "emt", "--fmax", "0.1", "--max-steps", "40"]


def _invoke(args):
    return CliRunner().invoke(main, args, catch_exceptions=False)


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"], ["report", "--help"]])
def test_help_ends_with_real_examples(args):
    result = _invoke(args)
    assert result.exit_code == 0
    last = result.output.rstrip().splitlines()[-1].strip()
    assert last.startswith("unimat-airss ")
    assert "unimat-airss --formula Mg2SiO4" in result.output


def test_run_resume_report_and_database(tmp_path):
    out, db = tmp_path / "run", tmp_path / "results.db"
    args = ["--formula", "CuAu", "--formula-units", "1-2", "-n", "3", *FAST, "--out", str(out)]
    first = _invoke([*args, "--db", str(db)])
    assert first.exit_code == 0, first.output
    assert "unique of 3 relaxed" in first.output
    assert len(list((out / "records").glob("*.json"))) == 3
    with open(out / "ranked.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and float(rows[0]["relative_enthalpy_per_fu_eV"]) == 0.0
    with connect(db) as database:
        assert database.count() == len(rows)

    again = _invoke([*args, "-n", "4"])  # resumes: only seed 3 is new
    assert again.exit_code == 0, again.output
    assert again.output.count("] CuAu") + again.output.count("] Cu2Au2") == 1
    assert "of 4 relaxed" in again.output

    report = _invoke(["report", str(out), "--top", "2"])
    assert report.exit_code == 0, report.output
    assert (out / "report" / "convergence.png").stat().st_size > 1000
    assert (out / "report" / "enthalpy_volume.png").stat().st_size > 1000


def test_explicit_run_subcommand_and_cell_file(tmp_path, al_cell):
    cell = tmp_path / "Al.cell"
    cell.write_text(al_cell(2, 2.0))
    result = _invoke(["run", "--cell", str(cell), "-n", "2", *FAST, "--out", str(tmp_path / "al"), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "Al2-cell-000000" in result.output or "Al2-cell-000001" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--formula", "Xx2O"], "unknown element"),
        (["--formula", ""], "empty formula"),
        (["--formula", "Mg2(SiO4"], "unbalanced"),
        (["--formula", "Mg2Si-O4"], "cannot parse formula"),
        (["--formula", "CuAu", "--calc", "vasp-ish"], "unknown calculator"),
        (["--formula", "CuAu", "--pressure", "nan"], "pressure must be"),
        (["--formula", "CuAu", "--pressure", "-500"], "pressure must be"),
        (["--formula", "CuAu", "--formula-units", "4-1"], "formula units"),
        (["--formula", "CuAu", "--formula-units", "0"], "formula units"),
        (["--formula", "CuAu", "--formula-units", "x"], "formula units"),
        (["--formula", "CuAu", "--cell", "IMPOSSIBLE"], "exactly one of --formula or --cell"),
        ([], "exactly one of --formula or --cell"),
        (["--formula", "CuAu", "--seeds", "magic"], "unknown seed source"),
        (["--cell", "IMPOSSIBLE"], "impossible MINSEP"),
        (["--formula", "CuAu", "-n", "0"], "-n"),
        (["--formula", "CuAu", "--unimat-strength", "0.3,x"], "--unimat-strength must be numbers"),
        (["--formula", "CuAu", "--unimat-strength", "0.3,1.5"], "unimat strength must be"),
    ],
)
def test_bad_input_is_one_line_without_traceback(tmp_path, args, message):
    impossible = tmp_path / "impossible.cell"
    impossible.write_text("#SPECIES=Cu%NUM=4\n#MINSEP=9.0\n#TARGVOL=10\n")
    args = [str(impossible) if a == "IMPOSSIBLE" else a for a in args]
    if "--calc" not in args:
        args += ["--calc", "emt"]
    if "--seeds" not in args:
        args += ["--seeds", "random"]
    result = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "out")])
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and message in errors[0], result.output


def test_report_of_a_folder_that_is_no_run(tmp_path):
    result = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert result.exit_code != 0 and "not a unimat-airss run directory" in result.output


def test_no_ordered_templates_is_recorded_in_the_run_folder(tmp_path):
    import json

    out = tmp_path / "run"
    result = _invoke(["--formula", "CuAu", "--formula-units", "1", "-n", "1", *FAST, "--out", str(out),
                      "--no-ordered-templates", "--quiet"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads((out / "manifest.json").read_text())["ordered_templates"] is False
