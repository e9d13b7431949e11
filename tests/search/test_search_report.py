"""Report pictures: best-so-far curves per seed source and the enthalpy-volume scatter."""

from __future__ import annotations

import matplotlib.image
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from ase_unimat.search.relax import relax
from ase_unimat.search.report import best_so_far, make_report
from ase_unimat.search.store import RunStore


def test_best_so_far_is_a_running_minimum_per_source_in_index_order():
    points = [
        {"index": 2, "source": "random", "enthalpy_per_fu": -1.0},
        {"index": 0, "source": "random", "enthalpy_per_fu": -0.5},
        {"index": 1, "source": "unimat", "enthalpy_per_fu": -2.0},
        {"index": 3, "source": "random", "enthalpy_per_fu": -0.7},
        {"index": 4, "source": "unimat", "enthalpy_per_fu": -1.5},
    ]
    assert best_so_far(points) == {"random": [-0.5, -1.0, -1.0], "unimat": [-2.0, -2.0]}


def test_report_draws_two_pngs(tmp_path):
    store = RunStore(tmp_path)
    store.open({"target": {"counts": {"Cu": 1}}, "n": 4})
    for index, (structure, source) in enumerate([("fcc", "random"), ("bcc", "unimat"), ("hcp", "random")]):
        atoms = bulk("Cu", structure, a=3.6 if structure == "fcc" else 2.87 if structure == "bcc" else 2.55)
        result = relax(atoms, EMT(), id=f"Cu-{source}-{index:06d}", source=source)
        result.seed_info["index"] = index
        store.save(result)
    paths = make_report(tmp_path)
    assert [p.name for p in paths] == ["convergence.png", "enthalpy_volume.png"]
    for path in paths:
        image = matplotlib.image.imread(path)
        assert image.shape[0] > 200 and image.shape[1] > 300


def test_report_needs_results(tmp_path):
    with pytest.raises(ValueError, match="no manifest"):
        make_report(tmp_path)
    RunStore(tmp_path).open({"n": 1})
    with pytest.raises(ValueError, match="no successful relaxations"):
        make_report(tmp_path)
