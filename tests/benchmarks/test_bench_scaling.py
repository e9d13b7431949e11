"""bench.bench_scaling: the log reader and the tables (the model evaluation runs in the benchmark)."""

from __future__ import annotations

import json

import pytest


@pytest.fixture
def scaling(bench_module):
    return bench_module("bench.bench_scaling")


def test_val_curve_reads_validation_records_and_keeps_the_last_of_a_step(tmp_path, scaling):
    log = tmp_path / "log.jsonl"
    log.write_text("\n".join(json.dumps(r) for r in [
        {"step": 50, "loss": 2.0}, {"step": 1000, "val_loss": 1.5}, {"step": 2000, "val_loss": 1.2},
        {"step": 2000, "val_loss": 1.1}]) + "\n")  # fmt: skip
    assert scaling.val_curve(log) == [(1000, 1.5), (2000, 1.1)]


def test_val_curve_of_a_log_joined_across_warm_restarts_counts_cumulative_steps(tmp_path, scaling):
    log = tmp_path / "log.jsonl"
    log.write_text("\n".join(json.dumps(r) for r in [
        {"step": 1000, "val_loss": 1.5}, {"step": 1000, "val_loss": 1.0, "run": "b", "cumulative_step": 2500}]) + "\n")  # fmt: skip
    assert scaling.val_curve(log) == [(1000, 1.5), (2500, 1.0)]


def test_markdown_lines_up_runs_by_step(scaling):
    runs = [{"run": "a", "structures": 6045, "parameters_M": 0.37, "export_step": 2000, "best_logged": 1.1,
             "unconditioned_val_loss": 1.2, "val_curve": [(1000, 1.5), (2000, 1.1)]},
            {"run": "b", "structures": 77771, "parameters_M": 1.9, "export_step": 1000, "best_logged": 1.4,
             "unconditioned_val_loss": 1.45, "val_curve": [(1000, 1.4)]}]  # fmt: skip
    text = scaling._markdown({"noise_draws": 8, "runs": runs})
    assert "| a | 6,045 | 0.37M | 2,000 | 1.100 | 1.200 |" in text
    assert "| 1,000 | 1.500 | 1.400 |" in text and "| 2,000 | 1.100 |  |" in text


def test_markdown_has_the_csp_columns_and_the_plot_groups_by_size(scaling, tmp_path):
    csp = {"rows": 100, "samples": 8, "match_at_1": 0.05, "match_at_k": 0.2, "rmse_at_1": 0.1}
    runs = [{"run": "a", "structures": 6045, "parameters_M": 0.37, "export_step": 2000, "best_logged": 1.1,
             "unconditioned_val_loss": 1.2, "val_curve": [(1000, 1.5), (2000, 1.1)], "csp": csp},
            {"run": "b", "structures": 77769, "parameters_M": 0.37, "export_step": 1000, "best_logged": 1.0,
             "unconditioned_val_loss": 1.05, "val_curve": [(1000, 1.0)]}]  # fmt: skip
    text = scaling._markdown({"noise_draws": 8, "runs": runs})
    assert "| a | 6,045 | 0.37M | 2,000 | 1.100 | 1.200 | 5.0 % | 20.0 % (k = 8, 100 rows) |" in text
    assert "| b | 77,769 | 0.37M | 1,000 | 1.000 | 1.050 |  |  |" in text
    scaling._plot(runs, tmp_path / "scaling.png")
    assert (tmp_path / "scaling.png").stat().st_size > 0
