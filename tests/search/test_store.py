"""Run directory: manifest compatibility, one record per seed, .res before record, leftovers removed."""

from __future__ import annotations

import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from pymatgen.io.res import AirssProvider

from ase_unimat.search.relax import RelaxSettings, relax
from ase_unimat.search.store import RunDirectoryError, RunStore

MANIFEST = {"target": {"counts": {"Cu": 1}}, "seeds": "random", "run_seed": 0, "settings": {"pressure": 0.0}, "n": 4}


def test_reopen_with_larger_n_keeps_the_largest(tmp_path):
    RunStore(tmp_path / "run").open(MANIFEST)
    store = RunStore(tmp_path / "run")
    store.open({**MANIFEST, "n": 9})
    assert store.read_manifest()["n"] == 9
    store.open({**MANIFEST, "n": 2})
    assert store.read_manifest()["n"] == 9


@pytest.mark.parametrize(
    ("change", "named"),
    [({"run_seed": 1}, "run_seed"), ({"seeds": "unimat"}, "seeds"), ({"settings": {"pressure": 5.0}}, "settings")],
)
def test_incompatible_options_are_refused_naming_them(tmp_path, change, named):
    RunStore(tmp_path).open(MANIFEST)
    with pytest.raises(RunDirectoryError, match=named):
        RunStore(tmp_path).open({**MANIFEST, **change})


def test_saved_records_and_res_files(tmp_path):
    store = RunStore(tmp_path)
    store.open(MANIFEST)
    atoms = bulk("Cu", "fcc", a=3.7)
    good = relax(atoms, EMT(), RelaxSettings(pressure=1.0), id="Cu-random-000000", source="random")
    good.seed_info["index"] = 0
    bad = relax(atoms, EMT(), RelaxSettings(pressure=-50, max_volume_ratio=1.01), id="Cu-random-000001")
    bad.seed_info["index"] = 1
    store.save(good)
    store.save(bad)

    assert store.finished_ids() == {"Cu-random-000000", "Cu-random-000001"}
    assert store.finished_indices() == {0, 1}
    assert sorted(p.name for p in store.res_dir.iterdir()) == ["Cu-random-000000.res"]  # failed: no .res
    res = AirssProvider.from_file(str(store.res_dir / "Cu-random-000000.res"))
    assert res.energy == pytest.approx(good.enthalpy, abs=1e-6)
    assert res.pressure == pytest.approx(1.0)
    assert res.spacegroup_label == "Fm-3m" == good.spacegroup

    loaded = {r.id: r for r in store.results()}
    assert loaded["Cu-random-000000"].enthalpy == pytest.approx(good.enthalpy)
    assert loaded["Cu-random-000000"].spacegroup == "Fm-3m"
    assert loaded["Cu-random-000001"].status == "failed" and "volume exploded" in loaded["Cu-random-000001"].reason


def test_leftover_temporary_files_are_removed_on_open(tmp_path):
    store = RunStore(tmp_path)
    store.open(MANIFEST)
    (store.res_dir / ".Cu-random-000003.res.abcd1234.tmp").write_text("TITL half")
    (store.records_dir / ".Cu-random-000003.json.wxyz_567.tmp").write_text("{")
    store.open(MANIFEST)
    assert list(store.res_dir.iterdir()) == [] and list(store.records_dir.iterdir()) == []


def test_unreadable_record_is_a_clear_error(tmp_path):
    store = RunStore(tmp_path)
    store.open(MANIFEST)
    (store.records_dir / "x.json").write_text("{not json")
    with pytest.raises(RunDirectoryError, match="cannot read record"):
        store.results()
