"""Issue 16, items 4 and 5: a non-number energy and extreme time limits fail (or pass) only their seed."""

from __future__ import annotations

import math
import signal

import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from ase_unimat.search.relax import RelaxSettings, relax


class TextEnergy(EMT):
    """EMT whose energy comes back as a string, as a broken wrapper might return it."""

    def calculate(self, *args, **kwargs):
        super().calculate(*args, **kwargs)
        self.results["energy"] = "abc"


def test_an_energy_that_is_not_a_number_fails_only_that_seed():
    result = relax(bulk("Cu", "fcc", a=3.7), TextEnergy(), RelaxSettings(max_steps=5))
    assert result.status == "failed"
    assert "not a number" in result.reason or "non-finite" in result.reason
    assert math.isnan(result.energy)


@pytest.mark.parametrize("limit", [math.inf, 1e300, 1e12])
def test_huge_time_limits_mean_no_limit(limit):
    result = relax(bulk("Cu", "fcc", a=3.7), EMT(), RelaxSettings(max_steps=20, time_limit=limit))
    assert result.status == "ok", result.reason
    assert signal.getitimer(signal.ITIMER_REAL)[0] == 0.0


def test_a_tiny_time_limit_is_a_recorded_timeout_every_time():
    handler = signal.getsignal(signal.SIGALRM)
    for _ in range(30):
        result = relax(bulk("Cu", "fcc", a=3.7), EMT(), RelaxSettings(max_steps=50, time_limit=1e-5))
        assert result.status == "failed" and "timeout" in result.reason
    assert signal.getitimer(signal.ITIMER_REAL)[0] == 0.0
    assert signal.getsignal(signal.SIGALRM) is handler
