"""Pooling search-efficiency runs and checking issue 7's targets on the pool (synthetic records)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

CONFIG = {"n_seeds": 10, "run_seed": 0, "calculator": "chgnet", "fmax": 0.05, "max_steps": 500, "time_limit": None}


@pytest.fixture
def sp(bench_module):
    return bench_module("bench.search_efficiency_pool")


def stats(hits: int, steps: float, n: int = 10) -> dict:
    p_est = (hits + 0.5) / (n + 1)
    return {"n": n, "hits": hits, "expected_relaxations": 1 / p_est, "steps_per_seed": steps, "wall_s_per_seed": 1.0}


def row(mid: str, bin_name: str, **sources) -> dict:
    return {"material_id": mid, "formula": mid.upper(), "natoms": 8, "bin": bin_name,
            "sources": {name.replace("_", "-"): value for name, value in sources.items()}}  # fmt: skip


def record(rows: list[dict], **config) -> dict:
    sources = sorted({s for r in rows for s in r["sources"]})
    return {"benchmark": "search_efficiency", "result": {"config": {**CONFIG, **config}, "per_target": rows,
                                                          "sources": sources}}  # fmt: skip


def test_pool_merges_draws_counts_shared_targets_once_and_applies_variants(sp):
    a = record([row("a1", "7-12", random=stats(0, 100), template=stats(5, 50), unimat_template=stats(5, 50))])
    b = record([row("b1", "7-12", random=stats(1, 120), template=stats(2, 60), unimat_template=stats(2, 60)),
                row("a1", "7-12", random=stats(9, 1), template=stats(9, 1))])  # fmt: skip
    variant = record([row("a1", "7-12", unimat_template=stats(8, 30), random=stats(1, 90, n=30))], n_seeds=30)
    pooled = sp.pool([("A", a), ("B", b)], [("V", variant)])
    assert [t["material_id"] for t in pooled["per_target"]] == ["a1", "b1"]
    assert any("more than one base run" in note for note in pooled["notes"])
    a1 = pooled["per_target"][0]["sources"]
    assert a1["unimat-template"]["hits"] == 8 and a1["random"]["n"] == 30  # the variant's sources replaced
    assert a1["template"]["hits"] == 5  # a source the variant did not run is kept
    table = pooled["bins"]["7-12"]["sources"]
    assert table["unimat-template"]["hits"] == 10 and table["random"]["seeds"] == 40


def test_a_variant_can_give_only_some_of_its_sources(sp, tmp_path):
    a = record([row("a1", "7-12", random=stats(0, 100), template=stats(5, 50), unimat_template=stats(5, 50))])
    variant = record([row("a1", "7-12", unimat_template=stats(8, 30), template=stats(9, 30))])
    pooled = sp.pool([("A", a)], [("V", variant, ("unimat-template",))])
    assert pooled["per_target"][0]["sources"]["template"]["hits"] == 5  # kept from the base run
    assert pooled["per_target"][0]["sources"]["unimat-template"]["hits"] == 8
    with pytest.raises(sp.PoolError, match="has no random results"):
        sp.pool([("A", a)], [("V", variant, ("random",))])
    path = tmp_path / "v.json"
    path.write_text(json.dumps(variant))
    name, _, chosen = sp._load_variant(f"{path}:unimat-template")
    assert chosen == ("unimat-template",) and name == "v.json (unimat-template)"
    assert sp._load_variant(str(path))[2] == ()
    with pytest.raises(sp.PoolError, match="unknown source"):
        sp._load_variant(f"{path}:diffusion")


def test_issue7_checks_use_paired_targets_and_the_issue_bounds(sp):
    rows = [row("x", "7-12", random=stats(0, 100), template=stats(4, 40), unimat_template=stats(9, 40)),
            row("y", "7-12", random=stats(0, 100), template=stats(4, 40), unimat_template=stats(9, 40)),
            row("z", "13-20", random=stats(0, 100), template=stats(9, 40), unimat_template=stats(2, 70)),
            row("s", "1-6", random=stats(5, 10), unimat_template=stats(5, 10))]  # fmt: skip
    checks = {(c["bin"], c["criterion"]): c for c in sp.issue7_targets(rows, "unimat-template")}
    ratio = (0.5 / 11) / (9.5 / 11)
    assert checks[("7-12", "1/p vs random")]["value"] == pytest.approx(ratio) and checks[("7-12", "1/p vs random")]["met"]
    assert checks[("7-12", "steps/seed vs random")]["value"] == pytest.approx(0.4)
    assert not checks[("13-20", "1/p vs template")]["met"] and not checks[("13-20", "steps/seed vs random")]["met"]
    assert checks[("1-6", "1/p vs random")]["value"] == pytest.approx(1.0) and checks[("1-6", "1/p vs random")]["met"]


def test_a_target_neither_source_hit_counts_as_even_whatever_the_seed_counts(sp):
    rows = [row("x", "7-12", random=stats(0, 100, n=30), unimat_template=stats(0, 40)),
            row("y", "7-12", random=stats(0, 100, n=30), unimat_template=stats(3, 40))]  # fmt: skip
    pair = sp.paired(rows, "7-12", "unimat-template", "random")
    assert pair["neither_hit"] == 1
    assert pair["relaxations_ratio"] == pytest.approx(((11 / 3.5) / (31 / 0.5)) ** 0.5)


def test_runs_with_other_settings_or_unknown_variant_targets_are_refused(sp):
    a = record([row("a1", "7-12", random=stats(0, 100))])
    with pytest.raises(sp.PoolError, match="max_steps: 500 vs 300"):
        sp.pool([("A", a), ("B", record([row("b1", "7-12", random=stats(0, 1))], max_steps=300))])
    with pytest.raises(sp.PoolError, match="in no base run"):
        sp.pool([("A", a)], [("V", record([row("zz", "7-12", random=stats(0, 1))]))])


def test_cli_writes_json_and_markdown_and_reports_mistakes_in_one_line(sp, tmp_path):
    path = tmp_path / "a.json"
    path.write_text(json.dumps(record([row("a1", "7-12", random=stats(0, 100), unimat_template=stats(9, 40))])))
    result = CliRunner().invoke(sp.main, [str(path), "--out", str(tmp_path), "--stem", "p"])
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "p.json").read_text())
    assert saved["issue7_targets"]["unimat-template"][0]["criterion"] == "1/p vs random"
    assert "| unimat-template | 7-12 | 1/p vs random | 1 | 0 |" in (tmp_path / "p.md").read_text()
    bad = CliRunner().invoke(sp.main, [str(tmp_path / "missing.json")])
    assert bad.exit_code != 0 and len(bad.output.strip().splitlines()) == 1


def test_issue13_checks_compare_unimat_with_random_sym_and_template_seeds(sp):
    rows = [row("x", "7-12", random=stats(0, 100), random_sym=stats(2, 90), unimat=stats(4, 40),
                template=stats(2, 40), unimat_template=stats(8, 40)),
            row("s", "1-6", random=stats(5, 10), unimat=stats(3, 10))]  # fmt: skip
    plain = {(c["bin"], c["criterion"]): c for c in sp.issue13_targets(rows, "unimat")}
    assert plain[("7-12", "1/p vs random")]["value"] == pytest.approx((11 / 4.5) / (11 / 0.5))
    assert plain[("7-12", "1/p vs random")]["met"] and plain[("7-12", "steps/seed vs random")]["met"]
    assert plain[("7-12", "1/p vs random-sym")]["value"] == pytest.approx(2.5 / 4.5)
    assert not plain[("1-6", "1/p vs random")]["met"]  # 3 hits against random's 5
    templ = {(c["bin"], c["criterion"]): c for c in sp.issue13_targets(rows, "unimat-template")}
    assert templ[("7-12", "1/p vs template")]["value"] == pytest.approx(2.5 / 8.5)
    assert templ[("7-12", "1/p")]["value"] == pytest.approx(11 / 8.5) and templ[("7-12", "1/p")]["met"]
