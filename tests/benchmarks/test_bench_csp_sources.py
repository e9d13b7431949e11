"""The seed-source CSP benchmark's summary and resumable cache (no model, no data)."""

from __future__ import annotations

import json

import pytest


@pytest.fixture
def cs(bench_module):
    return bench_module("bench.bench_csp_sources")


def test_summary_counts_a_match_at_k_and_unseeded_rows_as_misses(cs):
    items = [
        {"row": 0, "seeded": True, "rms": [0.1, None, None], "valid": 3, "natoms": 4},
        {"row": 1, "seeded": True, "rms": [None, None, 0.2], "valid": 2, "natoms": 8},
        {"row": 2, "seeded": False, "rms": [None, None, None], "valid": 0},
        {"row": 3, "seeded": True, "rms": [None, None, None], "valid": 3, "natoms": 16},
    ]
    s = cs.summarise(items, 3)
    assert s["rows"] == 4 and s["seeded"] == 3
    assert s["match_at_1"] == 0.25 and s["match_at_3"] == 0.5
    assert s["validity"] == pytest.approx(8 / 9)
    assert s["by_atoms"]["7-12"] == {"rows": 1, "match_at_1": 0.0, "match_at_3": 1.0}
    assert "match_at_5" not in s


def test_the_cache_keeps_finished_rows_and_skips_a_cut_line(cs, tmp_path):
    config = {"k": 2, "steps": 20, "min_distance": "0.5"}
    path = cs._cache_path(tmp_path, "unimat", config)
    assert path != cs._cache_path(tmp_path, "unimat", {**config, "k": 3})
    assert path != cs._cache_path(tmp_path, "unimat", {**config, "min_distance": "none"})
    assert cs._cache_path(tmp_path, "template", config) == cs._cache_path(tmp_path, "template", {**config, "min_distance": "1"})
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"row": 5, "seeded": True, "rms": [None, 0.1], "valid": 2}) + "\n" + '{"row": 6, "see')
    assert list(cs._read_cache(path)) == [5]


def test_a_row_sample_is_the_same_for_every_model_and_a_model_changes_the_cache(cs, tmp_path):
    config = {"k": 2, "steps": 20, "min_distance": "0.5", "rows": None, "row_sample": 50, "model": None}
    rows = cs.select_rows(1130, config)
    assert len(rows) == len(set(rows)) == 50 and rows == sorted(rows) and max(rows) < 1130
    assert rows == cs.select_rows(1130, {**config, "model": "other/model.pt"})
    assert cs.select_rows(1130, {**config, "row_sample": None}) == list(range(1130))
    assert cs.select_rows(1130, {**config, "rows": 24}) == list(range(24))  # --quick
    default = cs._cache_path(tmp_path, "unimat", config)
    assert default == cs._cache_path(tmp_path, "unimat", {k: v for k, v in config.items() if k != "model"})
    assert default != cs._cache_path(tmp_path, "unimat", {**config, "model": "other/model.pt"})
    assert cs._cache_path(tmp_path, "template", config) != cs._cache_path(tmp_path, "template", {**config, "model": "x"})
