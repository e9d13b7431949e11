"""Two-level search: top-K refinement, its records and ranking, failures, resume, and Refine on a run directory."""

from __future__ import annotations

import csv
import json
import shutil

import pytest
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT
from ase.io import read
from pymatgen.io.res import AirssProvider

from ase_unimat.search.refine import Refine, RefineError, format_refined_table
from ase_unimat.search.search import Search, SearchError
from ase_unimat.search.store import RunDirectoryError

FAST = {"calculator": "emt", "seeds": "random", "fmax": 0.1, "max_steps": 40, "formula_units": (1, 2), "n": 6}


class FailsOnFourAtoms(Calculator):
    """EMT, except that it raises for 4-atom cells."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        if len(atoms) == 4:
            raise RuntimeError("SCF did not converge")
        inner = EMT()
        inner.calculate(atoms, ["energy", "forces", "stress"], all_changes)
        self.results = dict(inner.results)


def test_two_levels_record_both_and_rank_by_the_final_one(tmp_path):
    search = Search("CuAu", **FAST, out=tmp_path, refine="emt", refine_top=3)
    levels = [r.seed_info.get("level", 1) for r in search.irun()]
    assert levels == [1] * 6 + [2] * 3
    final = search.run()
    first = search.ranking
    refined_ids = {p.stem for p in (tmp_path / "refine" / "records").glob("*.json")}
    assert refined_ids == {s.best.id for s in first.structures[:3]}
    for path in (tmp_path / "refine" / "res").glob("*.res"):
        assert AirssProvider.from_file(str(path)).appearances == 1  # an exact AIRSS TITL
        assert read(path).info["name"] == path.stem
    rows = list(csv.DictReader((tmp_path / "refine" / "ranked.csv").open()))
    assert [row["name"] for row in rows] == [s.best.id for s in final.structures]
    assert sorted(int(row["level1_rank"]) for row in rows) == sorted(
        s.best.seed_info["level1_rank"] for s in final.structures
    )
    assert all(row["status"] == "ok" for row in rows)
    table = format_refined_table(final)
    assert "L1 rank" in table and final[0].best.id in table


def test_a_refine_failure_marks_that_structure_and_the_rest_go_on():
    search = Search("CuAu", **FAST, refine=FailsOnFourAtoms(), refine_top=4)
    final = search.run()
    assert final.failed and all(len(r.atoms) == 4 for r in final.failed)
    assert all("SCF did not converge" in r.reason for r in final.failed)
    assert len(final.failed) + final.n_relaxed == min(4, len(search.ranking))
    assert "FAILED" in format_refined_table(final)


def test_resume_refines_nothing_twice_and_a_larger_top_adds(tmp_path):
    Search("CuAu", **FAST, out=tmp_path, refine="emt", refine_top=2).run()
    again = Search("CuAu", **FAST, out=tmp_path, refine="emt", refine_top=2)
    assert list(again.irun()) == []
    more = Search("CuAu", **FAST, out=tmp_path, refine="emt", refine_top=3)
    new = [r for r in more.irun()]
    assert len(new) == 1 and new[0].seed_info["level1_rank"] == 3
    assert json.loads((tmp_path / "refine" / "manifest.json").read_text())["n"] == 3


def test_a_changed_refine_option_is_refused_by_name_before_anything_runs(tmp_path, monkeypatch):
    (tmp_path / "mycalc.py").write_text("from ase.calculators.emt import EMT\n\ndef emt(scale=1):\n    return EMT()\n")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    Search("CuAu", **FAST, out=out, refine="mycalc:emt", refine_options={"scale": 1}, refine_top=1).run()
    changed = Search(
        "CuAu", **{**FAST, "n": 8}, out=out, refine="mycalc:emt", refine_options={"scale": 2}, refine_top=1
    )
    with pytest.raises(RunDirectoryError, match=r"calculator_options.scale: was 1, now 2"):
        next(changed.irun())
    assert len(list((out / "records").glob("*.json"))) == 6  # the larger -n relaxed nothing


def test_refine_settings_differ_from_the_first_level(tmp_path):
    search = Search("CuAu", **FAST, out=tmp_path, refine="emt", refine_top=1, refine_settings={"max_steps": 7})
    assert search.refiner.settings.max_steps == 7 and search.settings.max_steps == 40
    search.run()
    assert json.loads((tmp_path / "refine" / "manifest.json").read_text())["settings"]["max_steps"] == 7
    with pytest.raises(SearchError, match="refine settings"):
        Search("CuAu", **FAST, refine="emt", refine_settings={"fmax": -1})


def test_refine_a_finished_run_directory(tmp_path):
    Search("CuAu", **FAST, out=tmp_path).run()
    step = Refine(tmp_path, calculator="emt", top=2)
    assert step.settings.fmax == 0.1  # the first level's settings by default
    final = step.run()
    assert final.n_relaxed + len(final.failed) == 2
    assert (tmp_path / "refine" / "unique").is_dir()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"refine": "emt", "refine_top": 0}, RefineError, "positive integer"),
        ({"refine_options": {"ecutwfc": 30}}, SearchError, "without a refine calculator"),
        ({"refine": "espresso", "refine_options": {"ecutwfc": 30, "nbands": 8}}, ValueError, "nbands"),
    ],
)
def test_bad_refine_options(tmp_path, kwargs, error, match, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no pw.x either: the option error comes first
    with pytest.raises(error, match=match):
        Search("CuAu", **FAST, out=tmp_path / "run", **kwargs)
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("pw.x") is None, reason="Quantum ESPRESSO pw.x not installed")
def test_emt_screen_then_quantum_espresso_refine_of_aluminium(tmp_path):
    qe = {"ecutwfc": 15, "kpts": [4, 4, 4], "smearing": 0.02, "directory": str(tmp_path / "pw")}
    search = Search("Al", **{**FAST, "n": 3, "formula_units": 1}, out=tmp_path / "run", refine="espresso",
                    refine_options=qe, refine_top=1, optimizer="BFGS")  # fmt: skip
    final = search.run()
    assert len(final) == 1 and final[0].best.seed_info["level1_rank"] == 1
    assert final[0].best.enthalpy < -50  # a DFT total energy (eV), not EMT's near-zero one
    assert AirssProvider.from_file(str(next((tmp_path / "run" / "refine" / "res").glob("*.res")))).appearances == 1


def test_a_two_level_run_releases_both_run_directory_locks(tmp_path):
    from ase_unimat.search import store as store_module

    Search("CuAu", **FAST, out=tmp_path, refine="emt", refine_top=2).run()
    held = {key for key in store_module._HELD if key.startswith(str(tmp_path.resolve()))}
    assert held == set()  # every open had its close: a later Search of this process locks afresh
