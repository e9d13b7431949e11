"""Uniting duplicates, times found, the ca -r table, CSV, unique .res files and the ASE database."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, make_supercell
from ase.db import connect
from pymatgen.io.res import AirssProvider

from ase_unimat.search.rank import CSV_COLUMNS, format_table, rank, write_csv, write_database, write_unique_res
from ase_unimat.search.relax import RelaxResult


def _result(name: str, atoms: Atoms, enthalpy_per_atom: float, *, source: str = "random", ok: bool = True):
    return RelaxResult(
        id=name,
        source=source,
        status="ok" if ok else "failed",
        reason="" if ok else "calculator raised RuntimeError: boom",
        atoms=atoms,
        energy=enthalpy_per_atom * len(atoms) if ok else float("nan"),
        enthalpy=enthalpy_per_atom * len(atoms) if ok else float("nan"),
        volume=atoms.get_volume(),
        pressure=0.0,
        steps=10,
        converged=True,
        wall_time=0.1,
        spacegroup="",
    )


@pytest.fixture
def results() -> list[RelaxResult]:
    fcc_primitive = bulk("Cu", "fcc", a=3.6)
    fcc_cubic = bulk("Cu", "fcc", a=3.6, cubic=True)  # 4 atoms, same structure
    fcc_super = make_supercell(fcc_primitive, [[1, 1, 0], [0, 1, 0], [0, 0, 2]])  # 4 atoms, skewed cell
    fcc_super.rattle(0.002, seed=1)
    hcp = bulk("Cu", "hcp", a=2.55, c=4.16)
    bcc = bulk("Cu", "bcc", a=2.87)
    return [
        _result("Cu-random-000000", fcc_primitive, -3.500),
        _result("Cu4-random-000001", fcc_cubic, -3.501, source="unimat"),
        _result("Cu4-random-000002", fcc_super, -3.499),
        _result("Cu2-random-000003", hcp, -3.495),
        _result("Cu-random-000004", bcc, -3.40, source="template"),
        _result("Cu-random-000005", bcc.copy(), 0.0, ok=False),
    ]


def test_duplicates_are_united_with_times_found(results):
    ranking = rank(results)
    assert [s.best.id for s in ranking] == ["Cu4-random-000001", "Cu2-random-000003", "Cu-random-000004"]
    fcc = ranking[0]
    assert fcc.times_found == 3
    assert sorted(fcc.members) == ["Cu-random-000000", "Cu4-random-000001", "Cu4-random-000002"]
    assert fcc.best.source == "unimat" and sorted(fcc.sources) == ["random", "random", "unimat"]
    assert [s.times_found for s in ranking] == [3, 1, 1]
    assert [r.id for r in ranking.failed] == ["Cu-random-000005"]
    assert ranking.n_relaxed == 5


def test_enthalpies_are_per_formula_unit_and_relative_to_the_best(results):
    ranking = rank(results)
    assert ranking[0].relative_enthalpy_per_fu == 0.0
    assert ranking[0].n_fu == 4 and ranking[0].formula == "Cu"
    assert ranking[0].enthalpy_per_fu == pytest.approx(-3.501)
    assert ranking[0].volume_per_fu == pytest.approx(3.6**3 / 4)
    assert ranking[1].relative_enthalpy_per_fu == pytest.approx(0.006)
    assert ranking[2].relative_enthalpy_per_fu == pytest.approx(0.101)
    rel = [s.relative_enthalpy_per_fu for s in ranking]
    assert rel == sorted(rel)


def test_energy_window_keeps_far_apart_enthalpies_separate(results):
    ranking = rank(results, energy_window=0.0015)
    # fcc at -3.501 and -3.500 eV/atom united; -3.499 is 0.002 from the representative, so alone
    assert [s.times_found for s in ranking] == [2, 1, 1, 1]
    assert ranking[1].best.id == "Cu4-random-000002"


def test_table_and_csv(tmp_path, results):
    ranking = rank(results)
    table = format_table(ranking)
    assert table.splitlines()[3].startswith("Cu4-random-000001")
    assert "3 unique of 5 relaxed, 1 failed" in table
    path = write_csv(ranking, tmp_path / "ranked.csv")
    with open(path) as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == list(CSV_COLUMNS)
    assert [r["name"] for r in rows] == [s.best.id for s in ranking]
    assert [int(r["times_found"]) for r in rows] == [3, 1, 1]
    assert float(rows[2]["relative_enthalpy_per_fu_eV"]) == pytest.approx(0.101)
    assert rows[0]["source"] == "unimat"
    assert rows[0]["found_by"] == "random:2;unimat:1"
    assert "random:2;unimat:1" in table.splitlines()[3]


def test_empty_ranking_table():
    assert "no successful relaxations" in format_table(rank([]))


def test_unique_res_files_carry_times_found(tmp_path, results):
    ranking = rank(results)
    (tmp_path / "unique").mkdir()
    (tmp_path / "unique" / "Cu-random-000009.res").write_text("TITL stale")  # this run's, from an older ranking
    (tmp_path / "unique" / "user.res").write_text("TITL user")  # not written by the run: kept
    paths = write_unique_res(ranking, tmp_path / "unique", owned=["Cu-random-000009"])
    assert sorted(p.name for p in (tmp_path / "unique").iterdir()) == sorted([*(p.name for p in paths), "user.res"])
    found = {AirssProvider.from_file(str(p)).seed: AirssProvider.from_file(str(p)).appearances for p in paths}
    assert found == {"Cu4-random-000001": 3, "Cu2-random-000003": 1, "Cu-random-000004": 1}
    fcc = AirssProvider.from_file(str(tmp_path / "unique" / "Cu4-random-000001.res"))
    assert fcc.spacegroup_label == "Fm-3m"
    assert fcc.energy == pytest.approx(-3.501 * 4)


def test_database_rows(tmp_path, results):
    ranking = rank(results)
    path = write_database(ranking, tmp_path / "results.db")
    write_database(ranking, path)  # rewriting replaces, never appends
    with connect(path) as db:
        rows = list(db.select(sort="relative_enthalpy_per_fu"))
    assert [r.name for r in rows] == [s.best.id for s in ranking]
    assert [r.times_found for r in rows] == [3, 1, 1]
    assert rows[0].energy == pytest.approx(-3.501 * 4)
    np.testing.assert_allclose(rows[0].toatoms().cell.array, ranking[0].best.atoms.cell.array)
