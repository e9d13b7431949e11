"""Stability: reference data, competing phases, the energy cache, hull energies (hand-worked), S.U.N. on EMT."""

from __future__ import annotations

import math

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from pymatgen.core import Lattice, Structure
from pymatgen.io.ase import AseAtomsAdaptor

from ase_unimat import stability
from ase_unimat.search.relax import RelaxSettings, relax
from ase_unimat.stability import EnergyCache, PhaseEnergy, ReferenceRecord

SETTINGS = RelaxSettings(fmax=0.05, max_steps=200)


def record(material_id: str, structure: Structure, e_above_hull: float = 0.0) -> ReferenceRecord:
    counts = {el.symbol: int(n) for el, n in structure.composition.items()}
    return ReferenceRecord(material_id, "test", counts, e_above_hull, structure.to(fmt="cif"))


def cuau_l10() -> Structure:
    return Structure(Lattice.tetragonal(2.80, 3.85), ["Cu", "Au"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def cuau_b2() -> Structure:
    return Structure(Lattice.cubic(3.2), ["Cu", "Au"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def fcc(symbol: str, a: float) -> Structure:
    return AseAtomsAdaptor.get_structure(bulk(symbol, "fcc", a=a))


class Exploding(EMT):
    """An EMT that refuses to compute: proves energies came from the cache."""

    def calculate(self, *args, **kwargs):
        raise RuntimeError("calculator used although the cache should have answered")


# ------------------------------------------------------------------------------------------- data


def test_load_reference_records_reads_counts_and_filters(shared_data):
    records = stability.load_reference_records(shared_data, sources=("mp_20/val",), max_atoms=20)
    assert len(records) == 123  # the whole val split is <= 20 atoms
    small = stability.load_reference_records(shared_data, sources=("mp_20/val",), max_atoms=4)
    assert 0 < len(small) < len(records) and all(r.natoms <= 4 for r in small)
    first = records[0]
    atoms = first.atoms()
    assert len(atoms) == first.natoms
    assert sorted(atoms.get_chemical_symbols()) == sorted(s for s, n in first.counts.items() for _ in range(n))
    with pytest.raises(ValueError, match="unknown data sources"):
        stability.load_reference_records(shared_data, sources=("mp_21/train",))


def test_load_reference_records_deduplicates_by_material_id(shared_data):
    twice = stability.load_reference_records(shared_data, sources=("mp_20/val", "mp_20/val"))
    assert len(twice) == 123


def test_competing_phases_keeps_chemsys_and_lowest_polymorphs():
    records = [
        record("cu", fcc("Cu", 3.6)),
        record("au", fcc("Au", 4.08)),
        record("l10", cuau_l10(), 0.0),
        record("b2", cuau_b2(), 0.05),
        record("ag", fcc("Ag", 4.09)),
    ]
    ids = {r.material_id for r in stability.competing_phases(records, ["Cu", "Au"])}
    assert ids == {"cu", "au", "l10"}  # Ag is outside; B2 is the higher CuAu polymorph
    ids = {r.material_id for r in stability.competing_phases(records, ["Cu", "Au"], per_formula=None)}
    assert ids == {"cu", "au", "l10", "b2"}
    fallbacks = stability.elemental_fallbacks(records[2:4], ["Cu", "Au"])
    assert [name for name, _ in fallbacks] == ["ase-bulk-Au", "ase-bulk-Cu"]


# --------------------------------------------------------------------------------------- the hull


def phases_ab() -> list[PhaseEnergy]:
    # Cu at -1 eV/atom, Au at -2 eV/atom, CuAu at -1.75 eV/atom (0.25 below the Cu-Au tie line).
    return [
        PhaseEnergy("cu", {"Cu": 1}, -1.0, 0, "ok"),
        PhaseEnergy("au", {"Au": 2}, -4.0, 0, "ok"),
        PhaseEnergy("cuau", {"Cu": 1, "Au": 1}, -3.5, 0, "ok"),
        PhaseEnergy("broken", {"Cu": 1, "Au": 1}, math.nan, 0, "failed"),  # ignored
    ]


@pytest.mark.parametrize(
    ("counts", "energy", "expected"),
    [
        ({"Cu": 1, "Au": 1}, -3.0, 0.25),  # -1.5 eV/atom against the hull's -1.75
        ({"Cu": 1, "Au": 1}, -4.0, -0.25),  # below the hull: negative
        ({"Cu": 3, "Au": 1}, -5.2, 0.075),  # hull at x=1/4 between Cu (-1) and CuAu (-1.75): -1.375
        ({"Au": 1}, -2.0, 0.0),
    ],
)
def test_energy_above_hull_hand_worked(counts, energy, expected):
    assert stability.energy_above_hull(counts, energy, phases_ab()) == pytest.approx(expected, abs=1e-9)


def test_energy_above_hull_needs_every_element():
    with pytest.raises(ValueError, match="no elemental phase for Ag"):
        stability.energy_above_hull({"Cu": 1, "Ag": 1}, -3.0, phases_ab())


# ----------------------------------------------------------------------------------------- cache


def test_energy_cache_round_trip_and_keys(tmp_path):
    cache = EnergyCache(tmp_path / "e.json")
    key = EnergyCache.key("mp-1", "emt", SETTINGS)
    assert key != EnergyCache.key("mp-1", "emt", RelaxSettings(fmax=0.01))
    assert key != EnergyCache.key("mp-1", "chgnet", SETTINGS)
    assert cache.get(key) is None
    cache.put(PhaseEnergy(key, {"Cu": 1}, -3.5, 12, "ok"))
    again = EnergyCache(tmp_path / "e.json")
    assert again.get(key) == PhaseEnergy(key, {"Cu": 1}, -3.5, 12, "ok")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        EnergyCache(tmp_path / "bad.json")


def test_phase_energies_relax_once_then_come_from_the_cache(tmp_path):
    cache = EnergyCache(tmp_path / "e.json")
    phases = [record("cu", fcc("Cu", 3.7)), ("ase-bulk-Au", bulk("Au", "fcc", a=4.0))]
    first = stability.phase_energies(phases, EMT(), SETTINGS, cache=cache, calculator_name="emt")
    direct = relax(bulk("Cu", "fcc", a=3.7), EMT(), SETTINGS)
    assert first[0].energy == pytest.approx(direct.energy, abs=1e-6)
    assert first[0].counts == {"Cu": 1} and first[1].counts == {"Au": 1}
    second = stability.phase_energies(phases, Exploding(), SETTINGS, cache=cache, calculator_name="emt")
    assert second == first


# ----------------------------------------------------------------------------- uniqueness, novelty


def test_unique_and_novel_masks():
    shifted = cuau_l10()
    shifted.translate_sites([0, 1], [0.1, 0.2, 0.3])
    structures = [cuau_l10(), shifted, cuau_b2()]
    np.testing.assert_array_equal(stability.unique_mask(structures), [True, False, True])
    training = [record("l10", cuau_l10())]
    np.testing.assert_array_equal(stability.novel_mask(structures, training), [False, False, True])


# ------------------------------------------------------------------------------------- the report


def test_stability_report_on_emt_matches_direct_relaxations(tmp_path):
    hull = [record("cu", fcc("Cu", 3.6)), record("au", fcc("Au", 4.08))]
    generated = [AseAtomsAdaptor.get_atoms(cuau_l10()), AseAtomsAdaptor.get_atoms(cuau_b2())]
    cache = EnergyCache(tmp_path / "hull.json")
    report = stability.stability_report(
        generated, calculator=EMT(), calculator_name="emt", cache=cache, hull_records=hull,
        training_records=[record("l10", cuau_l10())], settings=SETTINGS,
    )  # fmt: skip
    e_cu = relax(bulk("Cu", "fcc", a=3.6), EMT(), SETTINGS).energy
    e_au = relax(bulk("Au", "fcc", a=4.08), EMT(), SETTINGS).energy
    expected = [relax(g, EMT(), SETTINGS).energy / 2 - (e_cu + e_au) / 2 for g in generated]
    np.testing.assert_allclose(report["e_hull"], expected, atol=1e-6)
    assert report["n_relaxed"] == 2 and report["hull_phases_cached"] == 2
    assert report["novelty"] == 0.5  # the L10 cell is in the training set
    assert report["uniqueness"] == 1.0
    stable = np.array(expected) <= 0.1
    assert report["sun_rate"] == pytest.approx(np.mean(stable & [False, True]))
    assert report["frac_e_hull_le_0.1"] == pytest.approx(stable.mean())


def test_stability_report_records_systems_without_a_hull_and_goes_on(tmp_path):
    hull = [record("cu", fcc("Cu", 3.6)), record("au", fcc("Au", 4.08))]
    cuf = bulk("CuF", "rocksalt", a=4.2)  # no F phase in the hull and none ASE can build
    cuf.info["energy"] = -1.0
    cuau = AseAtomsAdaptor.get_atoms(cuau_l10())
    cuau.info["energy"] = relax(cuau, EMT(), SETTINGS).energy
    report = stability.stability_report(
        [cuf, cuau], calculator=EMT(), calculator_name="emt", cache=EnergyCache(tmp_path / "hull.json"),
        hull_records=hull, training_records=[], settings=SETTINGS, relax_generated=False,
    )  # fmt: skip
    assert math.isnan(report["e_hull"][0]) and math.isfinite(report["e_hull"][1])
    assert list(report["e_hull_missing"]) == [0] and "no hull for Cu-F" in report["e_hull_missing"][0]


def test_stability_report_with_chgnet_on_silicon(tmp_path):
    pytest.importorskip("chgnet")
    diamond = bulk("Si", "diamond", a=5.43)
    simple_cubic = bulk("Si", "sc", a=2.6)
    hull = [record("si", AseAtomsAdaptor.get_structure(diamond))]
    report = stability.stability_report(
        [diamond, simple_cubic], calculator="chgnet", calculator_options={"threads": 1},
        cache=EnergyCache(tmp_path / "hull.json"), hull_records=hull, training_records=hull, settings=SETTINGS,
    )  # fmt: skip
    e_diamond, e_sc = report["e_hull"]
    assert abs(e_diamond) < 2e-3  # the hull's own structure, relaxed the same way
    assert e_sc > 0.1  # simple-cubic Si lies well above diamond
    assert report["novelty"] == 0.5 and report["sun_rate"] == 0.0
