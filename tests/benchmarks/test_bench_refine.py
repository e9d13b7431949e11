"""bench refine: the hit rule and the verdict (the QE runs themselves are the benchmark)."""

from __future__ import annotations

import tarfile
from types import SimpleNamespace

import pytest
from ase.build import bulk


@pytest.fixture
def refine(bench_module):
    return bench_module("bench.bench_refine")


def _result(ok, per_atom, atoms=None):
    atoms = bulk("Si", "fcc", a=3.9) if atoms is None else atoms  # not diamond
    return SimpleNamespace(ok=ok, enthalpy=len(atoms) * per_atom, atoms=atoms)


def test_hit_is_the_first_result_within_tolerance(refine):
    reference = _result(True, -2.0, bulk("Si"))
    results = [_result(True, -1.0), _result(False, float("nan")), _result(True, -1.995), _result(True, -2.0)]
    assert refine._hit(results, reference) == 3
    assert refine._hit(results[:2], reference) is None


def test_the_reference_structure_in_another_cell_is_a_hit_whatever_its_enthalpy(refine):
    reference = _result(True, -2.0, bulk("Si"))
    same = bulk("Si", cubic=True)  # diamond again, 8 atoms, another cell
    same.rattle(0.001, seed=0)
    assert refine.matches(same, reference.atoms) and not refine.matches(bulk("Si", "fcc", a=3.9), reference.atoms)
    assert refine._hit([_result(True, -1.0), _result(True, -1.5, same)], reference) == 2


def test_ground_states_have_the_composition_and_two_to_eight_atoms(refine):
    for name, counts, units, _ in refine.SYSTEMS:
        atoms = refine.ground_state(name)
        assert 2 <= len(atoms) == sum(counts.values()) * units <= 8
        assert {s: atoms.get_chemical_symbols().count(s) for s in counts} == {s: c * units for s, c in counts.items()}


def test_verdict(refine):
    def level(n, wall, found=True):
        return {"dft_relaxations_to_ground_state": n, "wall_s_to_ground_state": wall, "found": found}

    systems = [
        {"two_level": level(1, 10), "one_level": level(4, 40)},
        {"two_level": level(2, 20), "one_level": level(5, 50, False)},
    ]
    verdict = refine._verdict(systems)
    assert verdict["mean_dft_relaxations_two_level"] == 1.5 and verdict["ratio_one_over_two"] == 3.0
    assert (
        verdict["target_ratio_ge_3"]
        and verdict["target_wall_not_more"]
        and verdict["one_level_counts_are_lower_bounds"]
    )


# -- the work folder: key, snapshot, resuming (EMT stands in for CHGNet and QE) ----------------------------------


def test_work_folder_key_differs_between_quick_and_full_and_follows_the_settings(refine, monkeypatch, tmp_path):
    quick, full = refine._settings(True), refine._settings(False)
    assert refine.settings_key(quick) != refine.settings_key(full)
    assert refine.settings_key(full) == refine.settings_key(refine._settings(False))
    changed = {**full, "qe": {**full["qe"], "ecutwfc": 30.0}}
    assert refine.settings_key(changed) != refine.settings_key(full)
    monkeypatch.delenv(refine.WORK_ENV, raising=False)
    assert refine.work_folder(full) == refine.WORK_ROOT / refine.settings_key(full)
    assert refine.work_folder(full, tmp_path / "w") == tmp_path / "w"
    monkeypatch.setenv(refine.WORK_ENV, str(tmp_path / "env"))
    assert refine.work_folder(full) == tmp_path / "env"


def test_work_folder_of_other_settings_is_refused(refine, tmp_path):
    refine._open_work(refine._settings(True), tmp_path)
    refine._open_work(refine._settings(True), tmp_path)  # the same settings: fine
    with pytest.raises(ValueError, match="other settings"):
        refine._open_work(refine._settings(False), tmp_path)


def test_pack_and_unpack_round_trip_the_records_without_scratch(refine, tmp_path):
    settings = refine._settings(False)
    work = tmp_path / "work"
    refine._open_work(settings, work)
    kept = {
        "Si-reference.json": "{}",
        "Si-two/manifest.json": "{}",
        "Si-two/records/random-0000.json": '{"id": 1}',
        "Si-two/res/random-0000.res": "TITL x",
        "Si-two/ranked.csv": "name\n",
        "Si-two/unique/random-0000.res": "TITL x",
        "Si-two/refine/manifest.json": "{}",
        "Si-two/refine/records/random-0000.json": '{"id": 2}',
        "Si-one/records/random-0001.json": '{"id": 3}',
    }
    scratch = {
        "Si-two/.lock": "123",
        "Si-two/records/.random-0002.json.abcdefgh.tmp": "{",
        "Si-one/pwscf.save/data-file-schema.json": "{}",
        "Si-one/pwscf.save/wfc1.dat": "x",
        "Si-one/socket-77/espresso.pwi": "x",
        "Si-one/tmp/x.json": "{}",
        "Si-one/espresso.pwo": "x",
        "Si-one/CRASH": "x",
        "Si-one/pwscf.wfc1": "x",
    }
    for relative, text in {**kept, **scratch}.items():
        (work / relative).parent.mkdir(parents=True, exist_ok=True)
        (work / relative).write_text(text)
    tarball = refine.pack(settings, work, tmp_path / "refine_work.tar.gz")
    with tarfile.open(tarball) as tar:
        names = {m.name for m in tar.getmembers()}
    prefix = f"refine/{refine.settings_key(settings)}/"
    assert names == {prefix + p for p in [*kept, "settings.json"]}
    assert refine.pack(settings, work, tmp_path / "again.tar.gz").read_bytes() == tarball.read_bytes()  # deterministic

    restored = refine.unpack(settings, tmp_path / "restored", tarball)
    files = {p.relative_to(restored).as_posix() for p in restored.rglob("*") if p.is_file()}
    assert files == {*kept, "settings.json"}
    assert all((restored / p).read_text() == text for p, text in kept.items())
    with pytest.raises(ValueError, match="no run of these settings"):
        refine.unpack(refine._settings(True), tmp_path / "quick", tarball)


@pytest.fixture
def emt_refine(refine, monkeypatch):
    """The bench on Al with EMT at both levels; ``calls`` counts relaxations, ``fail_at`` interrupts the n-th."""
    import ase_unimat.search.relax as relax_module

    monkeypatch.setattr(refine, "SCREEN_CALCULATOR", "emt")
    monkeypatch.setattr(refine, "DFT_CALCULATOR", "emt")
    monkeypatch.setattr(refine, "SYSTEMS", (("Al", {"Al": 1}, 2, "fcc Al"),))
    monkeypatch.setattr(refine, "ground_state", lambda name: bulk("Al", "fcc", a=4.05))
    state = SimpleNamespace(calls=0, fail_at=None)
    original = relax_module.relax

    def counted(*args, **kwargs):
        state.calls += 1
        if state.calls == state.fail_at:
            raise KeyboardInterrupt("interrupted")
        return original(*args, **kwargs)

    monkeypatch.setattr(relax_module, "relax", counted)
    return state


def _emt_settings(tolerance):
    return {"qe": {}, "tolerance_eV_per_atom": tolerance, "n_seeds": 4, "top": 2, "one_level_max": 3, "fmax": 0.1,
            "max_steps": 30, "optimizer": "FIRE", "time_limit": None, "run_seed": 0}  # fmt: skip


def _counts(system):
    return [[r["id"] for r in system[level]["dft"]] for level in ("two_level", "one_level")]


@pytest.mark.parametrize("tolerance", [10.0, -10.0])  # every seed hits / none does (one level runs to its budget)
def test_second_call_on_the_same_folder_relaxes_nothing(refine, emt_refine, tmp_path, tolerance, monkeypatch):
    settings = _emt_settings(tolerance)
    if tolerance < 0:  # every Al seed relaxes to fcc, the reference structure: make none count
        monkeypatch.setattr(refine, "matches", lambda atoms, reference: False)
    first = refine.one_system("Al", {"Al": 1}, 2, settings, tmp_path)
    one_level = 1 if tolerance > 0 else 3
    assert emt_refine.calls == 1 + 4 + 2 + one_level  # reference, screen, top 2, one level up to the hit
    assert len(first["one_level"]["dft"]) == first["one_level"]["dft_relaxations_to_ground_state"] == one_level
    assert first["two_level"]["found"] is (tolerance > 0) and first["one_level"]["found"] is (tolerance > 0)
    emt_refine.calls = 0
    second = refine.one_system("Al", {"Al": 1}, 2, settings, tmp_path)
    assert emt_refine.calls == 0
    assert second == first


# Interrupted during the screen, the second refinement, the second one-level seed; and, where the first seed hits,
# during that one-level relaxation (the resumed run must stop at that hit again).
@pytest.mark.parametrize(("tolerance", "fail_at"), [(-10.0, 3), (-10.0, 7), (-10.0, 9), (10.0, 8)])
def test_an_interrupted_run_resumes_to_the_same_counts(refine, emt_refine, tmp_path, tolerance, fail_at):
    settings = _emt_settings(tolerance)
    whole = refine.one_system("Al", {"Al": 1}, 2, settings, tmp_path / "whole")
    relaxations, emt_refine.calls, emt_refine.fail_at = emt_refine.calls, 0, fail_at
    with pytest.raises(KeyboardInterrupt):
        refine.one_system("Al", {"Al": 1}, 2, settings, tmp_path / "resumed")
    emt_refine.fail_at = None
    resumed = refine.one_system("Al", {"Al": 1}, 2, settings, tmp_path / "resumed")
    assert emt_refine.calls == relaxations + 1  # every relaxation once, and the interrupted one again
    assert _counts(resumed) == _counts(whole)
    for level in ("two_level", "one_level"):
        for key in ("found", "dft_relaxations_to_ground_state"):
            assert resumed[level][key] == whole[level][key]
