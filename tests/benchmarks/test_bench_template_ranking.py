"""The template-ranking benchmark's metrics (no model, no data)."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def tr(bench_module):
    return bench_module("bench.bench_template_ranking")


def row(match, prior, loss):
    loss = np.asarray(loss, dtype=float)[:, None].repeat(4, axis=1)  # (C, T): the same loss at every time
    return {"match": np.asarray(match), "prior": np.asarray(prior, dtype=float), "coord": loss, "lattice": 0 * loss,
            "coord_sg": loss[::-1], "lattice_sg": 0 * loss}  # the space-group score reverses the order


def test_rank_metrics_find_the_first_match_under_each_ranking(tr):
    rows = [
        row([False, False, True], prior=[0.1, 0.2, 0.3], loss=[3.0, 2.0, 1.0]),  # the model ranks the match first
        row([True, False, False], prior=[0.1, 0.2, 0.3], loss=[1.0, 2.0, 3.0]),  # both rank it first
        row([False, False, False], prior=[0.1, 0.2, 0.3], loss=[1.0, 2.0, 3.0]),  # no match: left out
    ]
    metrics = tr.rank_metrics(rows)
    assert metrics["template order"] == {"targets": 2, "at_1": 0.5, "at_3": 1.0, "at_10": 1.0, "mrr": pytest.approx(2 / 3)}
    assert metrics["model"]["at_1"] == 1.0 and metrics["model"]["mrr"] == 1.0
    assert metrics["prior"] == metrics["template order"]
    assert metrics["model, own space group"]["at_1"] == 0.0 and metrics["model, own space group"]["mrr"] == pytest.approx(1 / 3)
