"""Seeds from files: formats, folders, globs, earlier run directories, and compositions refused by name."""

from __future__ import annotations

import pytest
from ase.build import bulk
from ase.io import write

from ase_unimat.search.airss_io import write_res
from ase_unimat.search.file_seeds import FileSeedSource
from ase_unimat.search.search import Search
from ase_unimat.search.seed_registry import make_seed_sources
from ase_unimat.search.seeds import SeedSourceError


def _cuau(a: float = 3.8):
    atoms = bulk("Cu", "fcc", a=a, cubic=True)
    atoms.symbols[[0, 1]] = "Au"  # Cu2Au2, L1_0
    return atoms


@pytest.fixture
def structures(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    write(folder / "a.cif", _cuau(3.8))
    write(folder / "b.extxyz", [_cuau(3.9), _cuau(4.0)])
    write(folder / "POSCAR", _cuau(4.1), format="vasp")
    write_res(folder / "c.res", _cuau(4.2), name="c", pressure=0.0, enthalpy=-1.0)
    (folder / "notes.txt").write_text("not a structure")
    return folder


def test_folder_of_every_format_in_name_order(structures):
    source = FileSeedSource(structures)
    assert [label for label, _ in source.structures] == ["POSCAR", "a.cif", "b.extxyz@0", "b.extxyz@1", "c.res"]
    seeds = source.make({"Cu": 1, "Au": 1}, [1, 3], run_seed=0)
    assert [s.id for s in seeds] == ["Cu2Au2-file-000001", "Cu2Au2-file-000003"]
    assert seeds[0].atoms.info["file"] == "a.cif" and seeds[0].atoms.get_volume() == pytest.approx(3.8**3)
    source.check_counts({"Au": 1, "Cu": 1})


def test_glob_and_spec(structures):
    source = make_seed_sources(f"file:{structures}/*.extxyz")
    assert source.name == "file" and len(source.sources["file"]) == 2


def test_wrong_composition_is_refused_by_file_name(structures):
    write(structures / "d.cif", bulk("Cu", "fcc", a=3.6))
    with pytest.raises(SeedSourceError, match=r"1 structure\(s\) are not AuCu: d.cif \(Cu\)"):
        FileSeedSource(structures).check_counts({"Cu": 1, "Au": 1})


def test_no_readable_structure(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SeedSourceError, match="no readable structure"):
        FileSeedSource(tmp_path / "empty")
    (tmp_path / "bad.cif").write_text("data_x\n_cell_length_a oops\n")
    with pytest.raises(SeedSourceError, match="no readable structure.*bad.cif"):
        FileSeedSource(tmp_path / "bad.cif")
    with pytest.raises(SeedSourceError, match="no such file"):
        FileSeedSource(tmp_path / "nowhere")


def test_an_earlier_run_directory_gives_its_unique_structures_best_first(tmp_path):
    first = Search(
        "CuAu", calculator="emt", seeds="random", n=4, formula_units=1, fmax=0.1, max_steps=40, out=tmp_path / "run"
    )
    ranking = first.run()
    source = FileSeedSource(tmp_path / "run")
    assert len(source) == len(ranking)
    assert source.structures[0][0] == f"{ranking[0].best.id}.res"
    with pytest.warns(UserWarning, match="lowered"):
        again = Search("CuAu", calculator="emt", seeds=f"file:{tmp_path / 'run'}", n=50, fmax=0.1, max_steps=40)
    assert again.n == len(ranking)
    results = list(again.irun())
    assert results[0].enthalpy <= ranking[0].best.enthalpy + 1e-6  # continued from its relaxed geometry
