"""bench refine: the hit rule and the verdict (the QE runs themselves are the benchmark)."""

from __future__ import annotations

import sys as _sys
from pathlib import Path as _Path
from types import SimpleNamespace

from ase.build import bulk

_REPO = str(_Path(__file__).resolve().parents[2])  # bench/ is not installed: import it from the checkout
_sys.path.insert(0, _REPO)
try:
    from bench.bench_refine import SYSTEMS, _hit, _verdict, ground_state
finally:
    _sys.path.remove(_REPO)


def _result(ok, per_atom):
    return SimpleNamespace(ok=ok, enthalpy=2 * per_atom, atoms=bulk("Si"))


def test_hit_is_the_first_result_within_tolerance():
    results = [_result(True, -1.0), _result(False, float("nan")), _result(True, -1.995), _result(True, -2.0)]
    assert _hit(results, -2.0) == 3
    assert _hit(results[:2], -2.0) is None


def test_ground_states_have_the_composition_and_two_to_eight_atoms():
    for name, counts, units, _ in SYSTEMS:
        atoms = ground_state(name)
        assert 2 <= len(atoms) == sum(counts.values()) * units <= 8
        assert {s: atoms.get_chemical_symbols().count(s) for s in counts} == {s: c * units for s, c in counts.items()}


def test_verdict():
    def level(n, wall, found=True):
        return {"dft_relaxations_to_ground_state": n, "wall_s_to_ground_state": wall, "found": found}

    systems = [
        {"two_level": level(1, 10), "one_level": level(4, 40)},
        {"two_level": level(2, 20), "one_level": level(5, 50, False)},
    ]
    verdict = _verdict(systems)
    assert verdict["mean_dft_relaxations_two_level"] == 1.5 and verdict["ratio_one_over_two"] == 3.0
    assert (
        verdict["target_ratio_ge_3"]
        and verdict["target_wall_not_more"]
        and verdict["one_level_counts_are_lower_bounds"]
    )
