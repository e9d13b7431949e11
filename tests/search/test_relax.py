"""Variable-cell relaxation: results, enthalpy, and every failure reason a search must survive."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT
from ase.filters import FrechetCellFilter
from ase.optimize import BFGS, FIRE
from ase.units import GPa

from ase_unimat.search.relax import RelaxResult, RelaxSettings, RelaxTask, relax, relax_task


@pytest.fixture
def rattled_cu() -> Atoms:
    atoms = bulk("Cu", "fcc", a=3.7, cubic=True)
    atoms.rattle(0.05, seed=3)
    atoms.info["source"] = "test"
    return atoms


class _Broken(Calculator):
    """EMT-like calculator that fails in a chosen way after ``after`` calls."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, mode: str, after: int = 0, delay: float = 0.0) -> None:
        super().__init__()
        self.mode, self.after, self.delay, self.calls = mode, after, delay, 0
        self.inner = EMT()

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.calls += 1
        time.sleep(self.delay)
        self.inner.calculate(atoms, ["energy", "forces", "stress"], all_changes)
        self.results = dict(self.inner.results)
        if self.calls > self.after:
            if self.mode == "raise":
                raise RuntimeError("SCF did not converge")
            if self.mode == "nan":
                self.results["forces"] = np.full((len(atoms), 3), np.nan)


@pytest.mark.parametrize("optimizer", ["FIRE", "BFGS"])
def test_result_matches_a_bare_ase_relaxation(rattled_cu, optimizer):
    settings = RelaxSettings(pressure=2.0, fmax=0.02, optimizer=optimizer)
    result = relax(rattled_cu, EMT(), settings, id="Cu4-test-000000", source="test")

    bare = rattled_cu.copy()
    bare.calc = EMT()
    opt = (FIRE if optimizer == "FIRE" else BFGS)(FrechetCellFilter(bare, scalar_pressure=2.0 * GPa), logfile=None)
    opt.run(fmax=0.02, steps=500)

    assert result.status == "ok" and result.converged and result.reason == ""
    assert result.steps == opt.nsteps
    assert result.energy == pytest.approx(bare.get_potential_energy(), abs=1e-8)
    assert result.volume == pytest.approx(bare.get_volume(), rel=1e-10)
    assert result.enthalpy == pytest.approx(result.energy + 2.0 * GPa * result.volume, abs=1e-10)
    assert result.seed_info["source"] == "test"
    assert rattled_cu.calc is None  # the input is not touched


def test_pressure_shrinks_the_cell(rattled_cu):
    low = relax(rattled_cu, EMT(), RelaxSettings(pressure=0.0))
    high = relax(rattled_cu, EMT(), RelaxSettings(pressure=20.0))
    assert high.volume < low.volume
    assert high.enthalpy > high.energy


def test_step_limit_gives_an_unconverged_ok_result(rattled_cu):
    result = relax(rattled_cu, EMT(), RelaxSettings(fmax=1e-6, max_steps=3))
    assert result.status == "ok" and not result.converged and result.steps == 3


@pytest.mark.parametrize(
    ("calculator", "settings", "reason"),
    [
        (lambda: _Broken("raise", after=2), RelaxSettings(), "calculator raised RuntimeError: SCF did not converge"),
        (lambda: _Broken("nan", after=2), RelaxSettings(), "non-finite"),
        (EMT, RelaxSettings(pressure=-30.0, max_volume_ratio=1.05), "volume exploded"),
        (EMT, RelaxSettings(pressure=400.0, min_volume_ratio=0.9), "volume collapsed"),
        (lambda: _Broken("slow", delay=0.05), RelaxSettings(time_limit=0.3, fmax=1e-9), "timeout after"),
    ],
    ids=["raises", "nan", "explodes", "shrinks", "timeout"],
)
def test_failures_are_recorded_with_their_reason(rattled_cu, calculator, settings, reason):
    result = relax(rattled_cu, calculator(), settings, id="bad")
    assert result.status == "failed" and not result.ok
    assert reason in result.reason
    assert not result.converged
    assert np.isnan(result.energy) and np.isnan(result.enthalpy)
    json.dumps(result.to_dict())  # a failed record is still storable


def test_colliding_atoms_fail():
    atoms = Atoms("Cu2", positions=[[0, 0, 0], [0.3, 0, 0]], cell=[6, 6, 6], pbc=True)
    result = relax(atoms, EMT())
    assert result.status == "failed"
    assert "atoms collapsed" in result.reason


def test_time_limit_interrupts_one_long_calculator_call(rattled_cu):
    start = time.perf_counter()
    result = relax(rattled_cu, _Broken("slow", delay=5.0), RelaxSettings(time_limit=0.3))
    assert time.perf_counter() - start < 3.0
    assert result.status == "failed" and "timeout" in result.reason


@pytest.mark.parametrize(
    "kwargs",
    [
        {"pressure": float("nan")},
        {"pressure": -500.0},
        {"fmax": 0.0},
        {"max_steps": -1},
        {"optimizer": "LBFGSX"},
        {"time_limit": 0.0},
    ],
)
def test_settings_reject_nonsense(kwargs):
    with pytest.raises(ValueError):
        RelaxSettings(**kwargs)


def test_record_round_trips_through_json(rattled_cu):
    result = relax(rattled_cu, EMT(), id="Cu4-test-000001", source="test")
    back = RelaxResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert back.id == result.id and back.source == "test" and back.status == "ok"
    assert back.enthalpy == result.enthalpy and back.steps == result.steps
    np.testing.assert_allclose(back.atoms.positions, result.atoms.positions)
    np.testing.assert_allclose(back.atoms.cell.array, result.atoms.cell.array)


def test_relax_task_builds_the_calculator_from_its_spec(rattled_cu):
    task = RelaxTask(id="t", source="test", atoms=rattled_cu, calculator="emt", settings=RelaxSettings(fmax=0.02))
    direct = relax(rattled_cu, EMT(), RelaxSettings(fmax=0.02))
    assert relax_task(task).energy == pytest.approx(direct.energy, abs=1e-10)
