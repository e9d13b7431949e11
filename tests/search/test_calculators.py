"""Calculator specs: names, module:factory, objects, factories, and the espresso pseudopotential rule."""

from __future__ import annotations

import importlib.util
import shutil

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from ase_unimat.search.calculators import (
    CalculatorError,
    check_calculator_spec,
    describe_calculator,
    find_pseudopotentials,
    get_calculator,
)
from ase_unimat.search.relax import RelaxSettings, relax


@pytest.mark.parametrize("spec", ["emt", "EMT", " emt ", "ase.calculators.emt:EMT"])
def test_named_and_module_factory_specs_build_emt(spec):
    calc = get_calculator(spec)
    atoms = bulk("Cu")
    atoms.calc = calc
    assert isinstance(calc, EMT)
    assert np.isfinite(atoms.get_potential_energy())


def test_object_is_used_as_is_and_factory_is_called():
    calc = EMT()
    assert get_calculator(calc) is calc
    assert isinstance(get_calculator(lambda: EMT()), EMT)
    with pytest.raises(CalculatorError, match="options"):
        get_calculator(calc, threads=1)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("vasp", "unknown calculator 'vasp'"),
        ("", "calculator must be"),
        (3, "calculator must be"),
        ("no_such_module_q:make", "cannot import calculator module"),
        ("ase.calculators.emt:no_such_factory", "no callable"),
        ("ase.calculators.emt:", "must look like"),
        ("builtins:dict", "not an ASE calculator"),
    ],
)
def test_bad_specs_raise_a_clear_error(spec, message):
    with pytest.raises(CalculatorError, match=message):
        get_calculator(spec)


def test_check_spec_catches_unknown_names_without_building():
    check_calculator_spec("emt")
    check_calculator_spec("ase.calculators.emt:EMT")
    with pytest.raises(CalculatorError, match="unknown calculator"):
        check_calculator_spec("gaussian-ish")


def test_emt_refuses_elements_it_has_no_parameters_for_by_name():
    check_calculator_spec("emt", symbols=["Cu", "O"])
    with pytest.raises(CalculatorError, match=r"EMT has no parameters for Na, Cl \(it covers Al Cu"):
        check_calculator_spec("emt", symbols=["Na", "Cl", "Cu"])


@pytest.mark.skipif(importlib.util.find_spec("sevenn") is not None, reason="sevenn is installed here")
def test_sevenn_absent_gives_install_hint():
    with pytest.raises(CalculatorError, match="not installed"):
        get_calculator("sevenn")


def test_espresso_without_pw_x_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("UNIMAT_PW_COMMAND", "no-such-pw.x")
    with pytest.raises(CalculatorError, match="not on PATH"):
        check_calculator_spec("espresso")
    with pytest.raises(CalculatorError, match="apt-get install quantum-espresso"):
        get_calculator("espresso")


def test_describe_is_stable_text():
    assert describe_calculator("EMT") == "emt"
    assert describe_calculator("ase.calculators.emt:EMT") == "ase.calculators.emt:EMT"
    assert describe_calculator(EMT()) == "object:ase.calculators.emt.EMT"


def test_pseudopotential_rule_prefers_norm_conserving_non_relativistic(tmp_path):
    for name in [
        "Si.pz-vbc.UPF",
        "Si.pz-rrkjus.UPF",
        "Si.rel-pz-rrkj.UPF",
        "O.pz-kjpaw.UPF",
        "O.pbe-rrkjus.UPF",
        "Mg.pbe-n-vbc.UPF",
    ]:
        (tmp_path / name).write_text("fake")
    chosen = find_pseudopotentials(["Si", "O", "Si"], pseudo_dir=tmp_path, functional="pz")
    assert chosen == {"Si": "Si.pz-vbc.UPF", "O": "O.pz-kjpaw.UPF"}
    with pytest.raises(CalculatorError, match="no pz pseudopotential for Mg"):
        find_pseudopotentials(["Mg"], pseudo_dir=tmp_path, functional="pz")
    with pytest.raises(CalculatorError, match="not found"):
        find_pseudopotentials(["Si"], pseudo_dir=tmp_path / "missing")


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("chgnet") is None, reason="chgnet not installed")
def test_chgnet_gives_energy_forces_and_stress():
    atoms = bulk("Si", "diamond", a=5.43)
    atoms.calc = get_calculator("chgnet", threads=1)
    assert np.isfinite(atoms.get_potential_energy())
    assert atoms.get_forces().shape == (2, 3)
    assert atoms.get_stress().shape == (6,)


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("pw.x") is None,
    reason="Quantum ESPRESSO pw.x not installed (apt-get install quantum-espresso quantum-espresso-data)",
)
def test_espresso_relaxes_rattled_silicon_end_to_end(tmp_path):
    atoms = bulk("Si", "diamond", a=5.6)
    atoms.rattle(0.05, seed=1)
    calc = get_calculator("espresso", ecutwfc=20.0, kspacing=0.3, directory=tmp_path / "pw")
    result = relax(atoms, calc, RelaxSettings(fmax=0.05, max_steps=60, optimizer="BFGS"), id="Si2-espresso")
    assert result.status == "ok", result.reason
    assert result.converged
    # LDA silicon: equilibrium lattice about 5.40 A, so 2-atom volume ~ 39-41 A^3.
    assert 37.0 < result.volume < 42.0
    assert result.energy < -200.0  # eV, pz-vbc Si2 total energy is about -213 eV


@pytest.mark.skipif(shutil.which("pw.x") is None, reason="Quantum ESPRESSO pw.x not installed")
def test_espresso_spec_checks_pseudopotentials_of_the_search_elements(tmp_path):
    (tmp_path / "Si.pz-vbc.UPF").write_text("fake")
    check_calculator_spec("espresso", symbols=["Si"], options={"pseudo_dir": tmp_path})
    with pytest.raises(CalculatorError, match="no pz pseudopotential for Xe"):
        check_calculator_spec("espresso", symbols=["Si", "Xe"], options={"pseudo_dir": tmp_path})
