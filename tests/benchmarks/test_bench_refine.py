"""bench refine: the hit rule and the verdict (the QE runs themselves are the benchmark)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from ase.build import bulk


@pytest.fixture
def refine(bench_module):
    return bench_module("bench.bench_refine")


def _result(ok, per_atom):
    return SimpleNamespace(ok=ok, enthalpy=2 * per_atom, atoms=bulk("Si"))


def test_hit_is_the_first_result_within_tolerance(refine):
    results = [_result(True, -1.0), _result(False, float("nan")), _result(True, -1.995), _result(True, -2.0)]
    assert refine._hit(results, -2.0) == 3
    assert refine._hit(results[:2], -2.0) is None


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
