"""The search-efficiency benchmark's relaxation cache, source selection and command line (no CHGNet)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, replace

import numpy as np
import pytest
from ase.build import bulk
from click.testing import CliRunner

from ase_unimat.search.relax import RelaxResult
from ase_unimat.search.relax_cache import RelaxCache, cache_key


@pytest.fixture
def se(bench_module):
    """``bench.search_efficiency``: the run and its command line."""
    return bench_module("bench.search_efficiency")


@pytest.fixture
def se_config(bench_module):
    return bench_module("bench._search_efficiency_config")


@pytest.fixture
def se_targets(bench_module):
    return bench_module("bench._search_efficiency_targets")


@pytest.fixture
def se_seeds(bench_module):
    return bench_module("bench._search_efficiency_seeds")


@pytest.fixture
def se_relax(bench_module):
    return bench_module("bench._search_efficiency_relax")


@pytest.fixture
def se_scoring(bench_module):
    return bench_module("bench._search_efficiency_scoring")


@pytest.fixture
def se_report(bench_module):
    return bench_module("bench._search_efficiency_report")


def small_cells():
    """Three tiny EMT cells (1, 2 and 4 atoms), slightly off equilibrium."""
    cells = [bulk("Cu", "fcc", a=3.7), bulk("Al", "fcc", a=4.0, cubic=True), bulk("Ni", "bcc", a=2.9, cubic=True)]
    cells[1].positions[0] += [0.05, 0.0, 0.02]
    return cells


def key_of(atoms, **changes):
    settings = {"calculator": "chgnet", "fmax": 0.05, "max_steps": 500, "time_limit": None} | changes
    return cache_key(atoms, **settings)


# ------------------------------------------------------------------------------------------- cache


def test_cache_key_depends_on_content_and_settings_only():
    atoms = bulk("NaCl", "rocksalt", a=5.6)
    key = key_of(atoms)
    assert len(key) == 64 and key == key_of(atoms.copy())
    renamed = atoms.copy()
    renamed.info.update(source="mixed", index=7)  # job names and provenance are not content
    assert key_of(renamed) == key
    below_rounding = atoms.copy()
    below_rounding.positions += 1e-9
    assert key_of(below_rounding) == key
    moved = atoms.copy()
    moved.positions[1, 0] += 1e-4
    strained = atoms.copy()
    strained.set_cell(atoms.cell.array * 1.001, scale_atoms=False)
    swapped = atoms.copy()
    swapped.numbers = swapped.numbers[::-1]
    others = [key_of(moved), key_of(strained), key_of(swapped)]
    others += [key_of(atoms, fmax=0.02), key_of(atoms, max_steps=300), key_of(atoms, time_limit=60.0)]
    others += [key_of(atoms, calculator="emt")]
    assert len({key, *others}) == 1 + len(others)


def test_cache_round_trip_and_misses(tmp_path):
    atoms = bulk("Cu", "fcc", a=3.6)
    result = RelaxResult(id="mp-1/random/0", source="random", status="ok", reason="", atoms=atoms, energy=-3.5,
                         enthalpy=-3.5, volume=atoms.get_volume(), pressure=0.0, steps=12, converged=True,
                         wall_time=1.25, seed_info={"source": "random", "index": 0})  # fmt: skip
    failed = replace(result, status="failed", reason="volume exploded", energy=math.nan, enthalpy=math.nan)
    cache = RelaxCache(tmp_path / "cache")
    assert cache.get("a" * 64) is None
    cache.put("a" * 64, result)
    cache.put("b" * 64, failed)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["a" * 64 + ".json", "b" * 64 + ".json"]
    back = cache.get("a" * 64)
    assert back.to_dict() == result.to_dict()
    back_failed = cache.get("b" * 64)
    assert not back_failed.ok and math.isnan(back_failed.energy) and back_failed.reason == "volume exploded"
    (tmp_path / "cache" / ("c" * 64 + ".json")).write_text('{"id": "trunc')  # damaged: a miss, not an error
    assert cache.get("c" * 64) is None


def test_cache_dir_setting(se_config, se_relax, tmp_path):
    assert se_relax.relax_cache(se_config.DEFAULT).root == se_config.DEFAULT_CACHE_DIR
    assert se_relax.relax_cache(replace(se_config.DEFAULT, cache_dir=str(tmp_path))).root == tmp_path
    assert se_relax.relax_cache(replace(se_config.DEFAULT, cache_dir="")) is None


def test_relax_all_reads_the_cache_on_the_second_run(se_config, se_relax, tmp_path):
    config = replace(se_config.QUICK, calculator="emt", workers=1, max_steps=40, cache_dir=str(tmp_path / "cache"))
    cu, al, ni = small_cells()
    jobs = [("t1/reference/0", cu), ("t1/random/0", al), ("t1/mixed/0", al.copy()), ("t2/template/0", ni)]
    first = se_relax.relax_all(jobs, config, say=lambda _: None)
    assert (first.from_cache, first.relaxed) == (0, 3)  # the Al cell is relaxed once for both names
    assert len(list((tmp_path / "cache").glob("*.json"))) == 3
    assert [first.results[k].id for k, _ in jobs] == [k for k, _ in jobs]
    assert first.results["t1/mixed/0"].source == "mixed" and first.results["t1/random/0"].source == "random"
    assert all(r.ok for r in first.results.values())

    again = [("t9/reference/0", cu.copy()), *jobs[1:]]  # same structure under a new name
    second = se_relax.relax_all(again, config, say=lambda _: None)
    assert (second.from_cache, second.relaxed) == (4, 0)
    assert second.results["t9/reference/0"].id == "t9/reference/0"
    for (key, _), (old_key, _) in zip(again, jobs, strict=True):
        assert second.results[key].energy == pytest.approx(first.results[old_key].energy, abs=1e-9)
        assert second.results[key].wall_time == first.results[old_key].wall_time  # the original run's time

    off = se_relax.relax_all(jobs[:1], replace(config, cache_dir=""), say=lambda _: None)
    assert (off.from_cache, off.relaxed) == (0, 1)


# ------------------------------------------------------------------------------ sources and summary


def stats(expected: float) -> dict:
    return {"expected_relaxations": expected, "hits": 1, "n": 4, "steps_per_seed": 10.0, "wall_s_per_seed": 1.0}


def test_summarise_includes_unimat_template_and_its_ratios(se_config, se_scoring):
    per_target = [
        {"bin": "7-12", "sources": {"unimat-template": stats(2.0), "random": stats(8.0), "template": stats(1.0)}},
        {"bin": "7-12", "sources": {"unimat-template": stats(2.0), "random": stats(2.0)}},
    ]
    sources = [name for name in se_config.SOURCE_ORDER if name in {"random", "template", "unimat-template"}]
    assert sources == ["unimat-template", "random", "template"]
    out = se_scoring.summarise(per_target, sources, ["7-12"])["7-12"]
    assert list(out["sources"]) == sources
    assert out["sources"]["unimat-template"]["expected_relaxations_geomean"] == pytest.approx(2.0)
    assert out["ratios"]["unimat-template/random"] == {"geomean": pytest.approx(0.5), "targets": 2}  # sqrt(1/4 * 1)
    assert out["ratios"]["unimat-template/template"] == {"geomean": pytest.approx(2.0), "targets": 1}
    assert "unimat/random" not in out["ratios"]


class FakeSource:
    def __init__(self, name: str) -> None:
        self.name = name

    def make(self, counts, indices, *, run_seed):
        return []


def test_build_sources_skips_what_cannot_be_built_and_mixes_pure_sources(se_config, se_targets, se_seeds, monkeypatch):
    import ase_unimat.search.seed_registry as seed_registry
    import ase_unimat.search.seeds as seeds

    built: list[str] = []

    def fake_make_seed_sources(spec, *, model=None, template_reference=None, unimat_options=None,
                               template_options=None):  # fmt: skip
        assert unimat_options == {} and template_options == {}
        if spec == "unimat-template":
            raise seeds.SeedSourceError("unknown seed source 'unimat-template'")
        if spec in ("template", "unimat-template") or "template:" in spec:
            assert template_reference == "index"
        built.append(spec)
        return FakeSource(spec)

    monkeypatch.setattr(seed_registry, "make_seed_sources", fake_make_seed_sources)
    monkeypatch.setattr(se_seeds, "_template_reference", lambda config, targets: "index")
    target = se_targets.Target("mp-1", "NaCl", {"Na": 1, "Cl": 1}, "1-6", cif="")
    notes_seen: list[str] = []
    config = replace(se_config.QUICK, sources=("mixed", "unimat-template", "random"))
    sources, notes = se_seeds.build_sources(config, [target], notes_seen.append)
    assert list(sources) == ["random", "mixed"]  # built in SOURCE_ORDER; unimat and template only feed the mix
    assert notes["unimat-template"].startswith("skipped: SeedSourceError: unknown seed source")
    assert notes["mixed"] == "equal mix of unimat, random, template (run seed + 1)"
    assert built[-1] == "unimat:1,random:1,template:1"
    assert any("unimat-template skipped" in line for line in notes_seen)


def test_config_rejects_unknown_sources_and_bins(se_config):
    with pytest.raises(ValueError, match="unknown or no seed sources"):
        replace(se_config.DEFAULT, sources=("unimat", "diffusion"))
    with pytest.raises(ValueError, match="unknown or no size bins"):
        replace(se_config.DEFAULT, bins=("1-20",))


# ------------------------------------------------------------------------------------- command line


def test_cli_builds_the_config_and_writes_json(se, se_config, monkeypatch, tmp_path):
    seen = {}

    def fake_run(config, *, out_dir, quick, stem, say):
        seen.update(config=config, out_dir=out_dir, quick=quick, stem=stem)
        return {"sources": list(config.sources), "value": np.float64(1.5), "inf": math.inf}

    monkeypatch.setattr(se, "run_search_efficiency", fake_run)
    args = ["--quick", "--sources", "unimat-template,random,random", "--bins", "7-12,13-20", "--n-seeds", "2",
            "--per-bin", "3", "--out", str(tmp_path), "--stem", "variant", "--no-cache"]  # fmt: skip
    out = CliRunner().invoke(se.main, args)
    assert out.exit_code == 0, out.output
    config = seen["config"]
    assert config.sources == ("unimat-template", "random") and config.bins == ("7-12", "13-20")
    assert (config.n_seeds, config.per_bin, config.cache_dir, config.model) == (2, 3, "", None)
    assert config.selection_seed == se_config.DEFAULT.selection_seed
    assert seen["quick"] is True and seen["stem"] == "variant" and seen["out_dir"] == tmp_path
    record = json.loads((tmp_path / "variant.json").read_text())
    assert record["benchmark"] == "search_efficiency" and record["quick"] is True
    assert record["result"] == {"sources": ["unimat-template", "random"], "value": 1.5, "inf": None}

    default = CliRunner().invoke(se.main, ["--out", str(tmp_path)])
    assert default.exit_code == 0, default.output
    assert seen["config"] == se_config.DEFAULT and seen["stem"] == "search_efficiency"
    assert (tmp_path / "search_efficiency.json").is_file()

    args = ["--selection-seed", "2", "--out", str(tmp_path), "--stem", "tuning", "--unimat-option", "first_pass=volume",
            "--unimat-option", "strength=0.2,0.5", "--unimat-option", "steps=20"]  # fmt: skip
    tuning = CliRunner().invoke(se.main, args)
    assert tuning.exit_code == 0, tuning.output
    options = (("first_pass", "volume"), ("strength", (0.2, 0.5)), ("steps", 20))
    assert seen["config"] == replace(se_config.DEFAULT, selection_seed=2, unimat_options=options)


def test_unimat_options_reach_the_unimat_sources(se_config):
    config = replace(se_config.DEFAULT, sources=("unimat-template",), unimat_options=(("first_pass", "volume"),))
    from ase_unimat.search.seed_registry import make_seed_sources

    built = make_seed_sources("unimat-template", unimat_options=dict(config.unimat_options))
    assert built.sources["unimat-template"].first_pass == "volume"
    with pytest.raises(ValueError, match="unknown UniMat option"):
        replace(se_config.DEFAULT, unimat_options=(("colour", "red"),))


def test_template_options_reach_both_template_sources(se_config):
    from ase_unimat.search.seed_registry import make_seed_sources

    config = replace(se_config.DEFAULT, template_options=(("ordered", "true"),))
    assert config.template_kwargs() == {"ordered": True}
    assert replace(se_config.DEFAULT, template_options=(("ordered", "no"),)).template_kwargs() == {"ordered": False}
    built = make_seed_sources("template,unimat-template", template_options=config.template_kwargs())
    assert built.sources["template"].ordered is True
    assert built.sources["unimat-template"].template_options == {"ordered": True}
    with pytest.raises(ValueError, match="unknown template option"):
        replace(se_config.DEFAULT, template_options=(("colour", "red"),))


def test_markdown_names_a_variant_and_its_target_draw(se_config, se_report):
    result = {"quick": False, "wall_s": 1.0, "relaxations": {"jobs": 0, "from_cache": 0, "relaxed": 0, "cache_dir": None},
              "config": {**asdict(replace(se_config.DEFAULT, selection_seed=2, unimat_options=(("sampler", "ddim"),),
                                             template_options=(("ordered", "true"),)))},
              "overlap_with_default_targets": ["mp-9"], "bins": {}, "source_notes": {}, "targets": []}  # fmt: skip
    text = se_report.markdown(result, "x.png")
    assert "selection seed 2 (default 2024)" in text and "mp-9" in text
    assert "UniMat source options (a variant): sampler=ddim" in text and text.startswith("# Search efficiency (variant run)")
    assert "template and unimat-template sources (a variant): ordered=true" in text
    plain = se_report.markdown({**result, "config": asdict(se_config.DEFAULT), "overlap_with_default_targets": []}, "x.png")
    assert "selection seed" not in plain and "variant" not in plain and plain.startswith("# Search efficiency (default")


def test_default_overlap_names_targets_of_the_default_draw(se_config, se_targets, monkeypatch):
    def draw(config):
        ids = {2024: ["mp-1", "mp-2"], 2: ["mp-2", "mp-3"]}[config.selection_seed]
        return [se_targets.Target(i, "X", {"X": 1}, "1-6", "") for i in ids]

    monkeypatch.setattr(se_targets, "held_out_targets", draw)
    tuning = replace(se_config.DEFAULT, selection_seed=2)
    assert se_targets.default_overlap(tuning, draw(tuning)) == ["mp-2"]
    assert se_targets.default_overlap(se_config.DEFAULT, draw(se_config.DEFAULT)) == []  # the default run itself: nothing to report


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sources", "unimat,diffusion"], "choose one or more of unimat, unimat-template"),
        (["--bins", "1-20"], "choose one or more of 1-6, 7-12, 13-20"),
        (["--n-seeds", "0"], "0 is not in the range x>=1"),
        (["--selection-seed", "-1"], "-1 is not in the range x>=0"),
        (["--unimat-option", "colour=red"], "expected KEY=VALUE with KEY one of steps"),
        (["--unimat-option", "strength"], "expected KEY=VALUE"),
        (["--template-option", "colour=red"], "expected KEY=VALUE with KEY one of ordered"),
        (["--stem", "../x"], "--stem '../x' must be a plain file name"),
        (["--model", "/nonexistent/model.pt"], "model '/nonexistent/model.pt' not found"),
    ],
)
def test_cli_mistakes_are_one_line(se, args, message):
    out = CliRunner().invoke(se.main, args)
    assert out.exit_code != 0
    assert message in out.output and "Traceback" not in out.output


def test_cli_help_ends_with_examples(se):
    out = CliRunner().invoke(se.main, ["--help"])
    assert out.exit_code == 0
    assert out.output.rstrip().splitlines()[-1].strip().startswith("python -m bench.search_efficiency")


def test_template_reference_variant_reads_the_models_file(se_config, monkeypatch, tmp_path):
    import importlib

    from ase.build import bulk

    from ase_unimat.data.hdf5 import write_structures

    seeds = importlib.import_module("bench._search_efficiency_seeds")
    report = importlib.import_module("bench._search_efficiency_report")
    (tmp_path / "model.pt").write_bytes(b"")
    write_structures(tmp_path / "reference.h5", [bulk("NaCl", "rocksalt", a=5.6)])
    config = replace(se_config.DEFAULT, model=str(tmp_path), template_reference="model")
    index = seeds._template_reference(config, [])
    assert len(index.candidates({"K": 1, "Br": 1})) >= 1
    with pytest.raises(RuntimeError, match="ships no reference.h5"):
        seeds._template_reference(replace(config, model=str(tmp_path / "none.pt")), [])
    assert "Templates from model (a variant" in "\n".join(report._variant_lines(asdict(config), []))
