"""generate(min_distance=...): samples with atoms too close are drawn again, reproducibly."""

from __future__ import annotations

import numpy as np
import pytest

from ase_unimat.core.geometry import shortest_distance
from ase_unimat.generation import generate
from ase_unimat.generation.generator import redraw_seed

KW = {"steps": 4, "device": "cpu"}


def test_redrawn_samples_are_far_enough_apart_and_the_others_unchanged(checkpoint):
    raw = generate("Cu8", n=12, model=checkpoint, seed=3, **KW)
    cutoff = float(np.median([shortest_distance(a) for a in raw]))  # half the untrained model's samples are "too close"
    kept = generate("Cu8", n=12, model=checkpoint, seed=3, min_distance=cutoff, max_redraws=6, **KW)
    redrawn = [i for i, a in enumerate(kept) if "redraws" in a.info]
    assert redrawn and len(redrawn) < 12
    for i, (a, b) in enumerate(zip(raw, kept, strict=True)):
        assert b.info["seed"] == a.info["seed"] == 3 + i
        if i in redrawn:
            assert shortest_distance(b) >= cutoff or b.info.get("too_close")
        else:
            np.testing.assert_allclose(a.positions, b.positions)
            assert shortest_distance(a) >= cutoff
    again = generate("Cu8", n=12, model=checkpoint, seed=3, min_distance=cutoff, max_redraws=6, **KW)
    for a, b in zip(kept, again, strict=True):
        np.testing.assert_allclose(a.positions, b.positions)


def test_a_distance_no_sample_can_reach_is_flagged_not_looped_forever(checkpoint):
    out = generate("Cu4", n=3, model=checkpoint, seed=0, min_distance=50.0, max_redraws=2, **KW)
    assert all(a.info["too_close"] and a.info["redraws"] == 2 for a in out)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_min_distance_must_be_a_positive_distance(checkpoint, bad):
    with pytest.raises(ValueError, match="min_distance"):
        generate("Cu4", n=1, model=checkpoint, min_distance=bad, **KW)


def test_redraw_seeds_differ_by_attempt_and_sample():
    seeds = {redraw_seed(s, k) for s in (0, 1, 2**40) for k in (1, 2, 3)}
    assert len(seeds) == 9 and all(0 <= s < 2**63 for s in seeds)
