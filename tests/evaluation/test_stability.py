"""Stability: reference data, competing phases, the energy cache, hull energies (hand-worked), S.U.N. on EMT."""

from __future__ import annotations

import math

import numpy as np
import pytest
import spglib
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.lj import LennardJones
from ase.data import chemical_symbols, covalent_radii
from pymatgen.core import Lattice, Structure
from pymatgen.io.ase import AseAtomsAdaptor

from ase_unimat.core.geometry import shortest_distance
from ase_unimat.evaluation import elements as elemental
from ase_unimat.evaluation import hull as hull_module
from ase_unimat.evaluation import reference as reference_data
from ase_unimat.evaluation import sun
from ase_unimat.evaluation.hull import EnergyCache, PhaseEnergy
from ase_unimat.evaluation.reference import ReferenceRecord
from ase_unimat.search.relax import RelaxSettings, relax

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
    records = reference_data.load_reference_records(shared_data, sources=("mp_20/val",), max_atoms=20)
    assert len(records) == 123  # the whole val split is <= 20 atoms
    small = reference_data.load_reference_records(shared_data, sources=("mp_20/val",), max_atoms=4)
    assert 0 < len(small) < len(records) and all(r.natoms <= 4 for r in small)
    first = records[0]
    atoms = first.atoms()
    assert len(atoms) == first.natoms
    assert sorted(atoms.get_chemical_symbols()) == sorted(s for s, n in first.counts.items() for _ in range(n))
    with pytest.raises(ValueError, match="unknown data sources"):
        reference_data.load_reference_records(shared_data, sources=("mp_21/train",))


def test_load_reference_records_deduplicates_by_material_id(shared_data):
    twice = reference_data.load_reference_records(shared_data, sources=("mp_20/val", "mp_20/val"))
    assert len(twice) == 123


def test_competing_phases_keeps_chemsys_and_lowest_polymorphs():
    records = [
        record("cu", fcc("Cu", 3.6)),
        record("au", fcc("Au", 4.08)),
        record("l10", cuau_l10(), 0.0),
        record("b2", cuau_b2(), 0.05),
        record("ag", fcc("Ag", 4.09)),
    ]
    ids = {r.material_id for r in reference_data.competing_phases(records, ["Cu", "Au"])}
    assert ids == {"cu", "au", "l10"}  # Ag is outside; B2 is the higher CuAu polymorph
    ids = {r.material_id for r in reference_data.competing_phases(records, ["Cu", "Au"], per_formula=None)}
    assert ids == {"cu", "au", "l10", "b2"}
    fallbacks = elemental.elemental_fallbacks(records[2:4], ["Cu", "Au"], sources=())  # () : without the data
    assert [name for name, _ in fallbacks] == ["ase-bulk-Au", "ase-bulk-Cu"]


# --------------------------------------------------------------------------- elemental references


@pytest.mark.parametrize("z", range(1, 95))
def test_every_element_1_to_94_has_a_fallback_reference(z):
    symbol = chemical_symbols[z]
    name, atoms = elemental.elemental_fallback(symbol)
    assert set(atoms.get_chemical_symbols()) == {symbol} and atoms.pbc.all()
    assert name.startswith(("ase-bulk-", "ase-crystal-", "ase-molecule-")) and symbol in name
    nearest = shortest_distance(atoms)
    if symbol in ("He", "Ne", "Ar", "Kr", "Xe", "Rn"):  # van der Waals solids
        assert 2.5 < nearest < 5.0
    else:
        assert 0.6 < nearest / (2 * covalent_radii[z]) < 1.6
    if symbol in elemental.DIATOMIC:
        assert name == f"ase-molecule-{symbol}2" and atoms.info["fixed_cell"] and len(atoms) == 2
        assert np.allclose(atoms.cell.array, np.eye(3) * elemental.BOX_EDGE)
        assert atoms.get_distance(0, 1) == pytest.approx(nearest)
    else:
        assert 5.0 < atoms.get_volume() / len(atoms) < 150.0 and not atoms.info.get("fixed_cell")


def test_fallback_ids_name_approximations_and_beyond_pu_raises():
    assert elemental.elemental_fallback("Cu")[0] == "ase-bulk-Cu"
    assert elemental.elemental_fallback("U")[0] == "ase-crystal-U"  # ASE's U has no basis: 83 Å^3/atom
    assert elemental.elemental_fallback("S")[0] == "ase-crystal-S-approx"
    for bad in ("Am", "Xx", ""):
        with pytest.raises(ValueError, match="only elements 1-94"):
            elemental.elemental_fallback(bad)


@pytest.mark.parametrize("symbol", sorted(s for s, c in elemental.ELEMENT_CRYSTALS.items() if not c.approximate))
def test_measured_crystals_have_their_space_group(symbol):
    _, atoms = elemental.elemental_fallback(symbol)
    cell = (atoms.cell.array, atoms.get_scaled_positions(), atoms.numbers)
    assert spglib.get_symmetry_dataset(cell, symprec=1e-3).number == elemental.ELEMENT_CRYSTALS[symbol].spacegroup


def test_elemental_fallbacks_trust_rule_without_data():
    cu_sure, cu_high, cu_unknown = (record(i, fcc("Cu", 3.6), e) for i, e in (("a", 0.0), ("b", 0.5), ("c", math.nan)))
    assert elemental.elemental_fallbacks([cu_sure], ["Cu"], sources=()) == []
    for untrusted in (cu_high, cu_unknown):  # a high or unknown polymorph keeps the fallback beside it
        assert [n for n, _ in elemental.elemental_fallbacks([untrusted], ["Cu"], sources=())] == ["ase-bulk-Cu"]
    assert [n for n, _ in elemental.elemental_fallbacks([cu_high, cu_sure], ["Cu"], sources=())] == []


def test_elemental_fallbacks_prefer_the_data_at_any_size(shared_data):
    data = elemental.elemental_records(shared_data)
    untrusted = sorted(s for s, r in data.items() if not r.e_above_hull <= elemental.ELEMENTAL_TRUST)
    trusted = sorted(s for s, r in data.items() if r.e_above_hull <= elemental.ELEMENTAL_TRUST)
    large = sorted(s for s, r in data.items() if r.natoms > 20)
    assert trusted and untrusted and large  # e.g. O (MP e_hull 0.002), B (lemat: unknown), B (50 atoms)
    absent = [s for s in ("N", "F", "Mn", "S") if s not in data]
    assert absent
    elements = [trusted[0], untrusted[0], large[0], absent[0]]
    names = [n for n, _ in elemental.elemental_fallbacks([], elements, data_dir=shared_data)]
    assert data[trusted[0]].material_id in names and elemental.elemental_fallback(trusted[0])[0] not in names
    assert data[untrusted[0]].material_id in names and elemental.elemental_fallback(untrusted[0])[0] in names
    assert data[large[0]].material_id in names  # no 20-atom limit for elements
    assert elemental.elemental_fallback(absent[0])[0] in names
    # A trusted elemental record among the hull records wins over the data: nothing is added.
    assert elemental.elemental_fallbacks([record("mine", fcc("Cu", 3.6))], ["Cu"], data_dir=shared_data) == []
    with_records = reference_data.load_reference_records(shared_data, sources=reference_data.HULL_SOURCES, max_atoms=20)
    assert all(r.natoms <= 20 for r in with_records) and any(r.natoms > 20 for r in data.values())


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
    assert hull_module.energy_above_hull(counts, energy, phases_ab()) == pytest.approx(expected, abs=1e-9)


def test_energy_above_hull_needs_every_element():
    with pytest.raises(ValueError, match="no elemental phase for Ag"):
        hull_module.energy_above_hull({"Cu": 1, "Ag": 1}, -3.0, phases_ab())


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
    first = hull_module.phase_energies(phases, EMT(), SETTINGS, cache=cache, calculator_name="emt")
    direct = relax(bulk("Cu", "fcc", a=3.7), EMT(), SETTINGS)
    assert first[0].energy == pytest.approx(direct.energy, abs=1e-6)
    assert first[0].counts == {"Cu": 1} and first[1].counts == {"Au": 1}
    second = hull_module.phase_energies(phases, Exploding(), SETTINGS, cache=cache, calculator_name="emt")
    assert second == first


# ----------------------------------------------------------------------------- uniqueness, novelty


def test_unique_and_novel_masks():
    shifted = cuau_l10()
    shifted.translate_sites([0, 1], [0.1, 0.2, 0.3])
    structures = [cuau_l10(), shifted, cuau_b2()]
    np.testing.assert_array_equal(sun.unique_mask(structures), [True, False, True])
    training = [record("l10", cuau_l10())]
    np.testing.assert_array_equal(sun.novel_mask(structures, training), [False, False, True])


# ------------------------------------------------------------------------------------- the report


def test_stability_report_on_emt_matches_direct_relaxations(tmp_path):
    hull = [record("cu", fcc("Cu", 3.6)), record("au", fcc("Au", 4.08))]
    generated = [AseAtomsAdaptor.get_atoms(cuau_l10()), AseAtomsAdaptor.get_atoms(cuau_b2())]
    cache = EnergyCache(tmp_path / "hull.json")
    report = sun.stability_report(
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


def lennard_jones() -> LennardJones:
    """A calculator for any element (EMT has no F): pair minimum -0.5 eV at 2^(1/6) * 2 Å."""
    return LennardJones(sigma=2.0, epsilon=0.5, rc=6.0)


def test_relax_fixed_cell_keeps_the_box_and_finds_the_bond_minimum():
    name, f2 = elemental.elemental_fallback("F")
    f2.positions[1] += [0.0, 0.0, 0.4]  # stretched
    phase = hull_module.relax_fixed_cell(name, f2, lennard_jones(), RelaxSettings(fmax=0.005))
    shift = 4 * 0.5 * ((2.0 / 6.0) ** 12 - (2.0 / 6.0) ** 6)  # ASE's LJ is zero at rc
    assert phase.status == "ok" and phase.counts == {"F": 2} and phase.steps > 0
    assert phase.energy == pytest.approx(-0.5 - shift, abs=1e-5)
    failed = hull_module.relax_fixed_cell(name, f2, EMT(), SETTINGS)  # EMT has no parameters for F
    assert failed.status == "failed" and math.isnan(failed.energy)


def test_stability_report_gives_cu_f_a_hull_with_the_f2_fallback(tmp_path):
    hull = [record("cu", fcc("Cu", 3.6))]
    cuf = bulk("CuF", "rocksalt", a=4.2)  # no F phase in the hull records; ASE's bulk has none either
    cuf.info["energy"] = -1.0
    report = sun.stability_report(
        [cuf], calculator=lennard_jones(), calculator_name="lj", cache=EnergyCache(tmp_path / "hull.json"),
        hull_records=hull, training_records=[], settings=SETTINGS, relax_generated=False, elemental_sources=(),
    )  # fmt: skip
    e_cu = relax(bulk("Cu", "fcc", a=3.6), lennard_jones(), SETTINGS).energy
    e_f2 = hull_module.relax_fixed_cell("f2", elemental.elemental_fallback("F")[1], lennard_jones(), SETTINGS).energy
    assert report["e_hull_missing"] == {}
    assert report["e_hull"][0] == pytest.approx((-1.0 - e_cu - e_f2 / 2) / 2, abs=1e-6)
    assert report["elemental_references"] == {"Cu": "cu", "F": "ase-molecule-F2"}


def test_stability_report_records_systems_without_a_hull_and_goes_on(tmp_path):
    hull = [record("cu", fcc("Cu", 3.6)), record("au", fcc("Au", 4.08))]
    cuf = bulk("CuF", "rocksalt", a=4.2)  # EMT cannot relax the F2 fallback: no elemental phase for F
    cuf.info["energy"] = -1.0
    cuau = AseAtomsAdaptor.get_atoms(cuau_l10())
    cuau.info["energy"] = relax(cuau, EMT(), SETTINGS).energy
    report = sun.stability_report(
        [cuf, cuau], calculator=EMT(), calculator_name="emt", cache=EnergyCache(tmp_path / "hull.json"),
        hull_records=hull, training_records=[], settings=SETTINGS, relax_generated=False, elemental_sources=(),
    )  # fmt: skip
    assert math.isnan(report["e_hull"][0]) and math.isfinite(report["e_hull"][1])
    assert list(report["e_hull_missing"]) == [0] and "no elemental phase for F" in report["e_hull_missing"][0]
    assert report["elemental_references"] == {"Au": "au", "Cu": "cu"}


def test_stability_report_with_chgnet_on_silicon(tmp_path):
    pytest.importorskip("chgnet")
    diamond = bulk("Si", "diamond", a=5.43)
    simple_cubic = bulk("Si", "sc", a=2.6)
    hull = [record("si", AseAtomsAdaptor.get_structure(diamond))]
    report = sun.stability_report(
        [diamond, simple_cubic], calculator="chgnet", calculator_options={"threads": 1},
        cache=EnergyCache(tmp_path / "hull.json"), hull_records=hull, training_records=hull, settings=SETTINGS,
    )  # fmt: skip
    e_diamond, e_sc = report["e_hull"]
    assert abs(e_diamond) < 2e-3  # the hull's own structure, relaxed the same way
    assert e_sc > 0.1  # simple-cubic Si lies well above diamond
    assert report["novelty"] == 0.5 and report["sun_rate"] == 0.0


def test_chgnet_relaxes_the_u_crystal_and_the_n2_box(tmp_path):
    pytest.importorskip("chgnet")
    phases = [elemental.elemental_fallback("U"), elemental.elemental_fallback("N")]
    cache = EnergyCache(tmp_path / "hull.json")
    u, n2 = hull_module.phase_energies(phases, "chgnet", SETTINGS, cache=cache, calculator_options={"threads": 1})
    assert u.status == n2.status == "ok" and u.counts == {"U": 2} and n2.counts == {"N": 2}
    assert -13.0 < u.energy / 2 < -10.0 and -9.0 < n2.energy / 2 < -7.5  # MP-like eV/atom (PBE: U -11.3, N -8.3)


def test_default_data_dir_prefers_the_environment_then_an_existing_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("UNIMAT_SHARED_DATA", str(tmp_path / "elsewhere"))
    assert reference_data.default_data_dir() == tmp_path / "elsewhere"
    monkeypatch.delenv("UNIMAT_SHARED_DATA")
    (tmp_path / "run" / "shared" / "data").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "run")
    found = reference_data.default_data_dir()
    assert found.is_dir() and found.parts[-2:] == ("shared", "data")


def test_elemental_fallbacks_without_the_default_data_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("UNIMAT_SHARED_DATA", str(tmp_path / "absent"))
    assert [name for name, _ in elemental.elemental_fallbacks([], ["F"])] == ["ase-molecule-F2"]
    with pytest.raises(FileNotFoundError):
        elemental.elemental_fallbacks([], ["F"], data_dir=tmp_path / "absent")
