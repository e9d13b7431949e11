"""The benchmark runner (``python -m bench``) and the scoring rules of the search-efficiency benchmark."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk

from ase_unimat.search.relax import RelaxResult

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def bench_package(bench_module):
    """``bench``, imported from the repository root (it is not an installed package)."""
    return bench_module("bench")


def run_bench(*args: str, extra_path: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    if extra_path is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(extra_path), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=REPO, env=env, capture_output=True, text=True)


def write_fake_package(root: Path) -> None:
    pkg = root / "fakebench"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "bench_echo.py").write_text(
        textwrap.dedent(
            '''
            """Echo: returns its arguments."""
            import numpy as np

            def run(*, quick, out_dir):
                (out_dir / "extra.txt").write_text("plot stand-in")
                return {"quick": quick, "nan": float("nan"), "array": np.arange(3), "scalar": np.float32(1.5)}
            '''
        )
    )
    (pkg / "bench_broken.py").write_text('"""Returns a list."""\ndef run(*, quick, out_dir):\n    return [1]\n')
    (pkg / "_private.py").write_text("def run(*, quick, out_dir):\n    return {}\n")
    (pkg / "helpers.py").write_text("VALUE = 1\n")


def test_list_shows_the_search_efficiency_benchmark():
    out = run_bench("--list")
    assert out.returncode == 0, out.stderr
    assert "search_efficiency" in out.stdout


def test_runner_discovers_runs_and_writes_json(tmp_path):
    write_fake_package(tmp_path)
    listing = run_bench("--package", "fakebench", "--list", extra_path=tmp_path)
    assert listing.returncode == 0, listing.stderr
    names = [line.split()[0] for line in listing.stdout.splitlines() if line.strip() and not line.startswith("(")]
    assert names == ["broken", "echo"]  # _private is skipped, helpers has no run()
    assert "(skipped fakebench.helpers: no run(*, quick, out_dir) function" in listing.stdout
    assert "Echo: returns its arguments." in listing.stdout
    out_dir = tmp_path / "results"
    done = run_bench("--package", "fakebench", "echo", "--quick", "--out", str(out_dir), extra_path=tmp_path)
    assert done.returncode == 0, done.stderr
    record = json.loads((out_dir / "echo_quick.json").read_text())
    assert record["benchmark"] == "echo" and record["quick"] is True
    assert record["result"] == {"quick": True, "nan": None, "array": [0, 1, 2], "scalar": 1.5}
    assert record["wall_s"] >= 0 and record["machine"]["cpu_count"] >= 1 and record["git_commit"]
    assert (out_dir / "extra.txt").read_text() == "plot stand-in"


def test_runner_errors_are_one_line(tmp_path):
    write_fake_package(tmp_path)
    unknown = run_bench("--package", "fakebench", "nope", extra_path=tmp_path)
    assert unknown.returncode != 0
    assert "unknown benchmark 'nope'; known: broken, echo" in unknown.stderr
    assert "Traceback" not in unknown.stderr
    broken = run_bench("--package", "fakebench", "broken", "--out", str(tmp_path / "o"), extra_path=tmp_path)
    assert broken.returncode != 0 and "returned list, not a dict" in broken.stderr


def test_dry_run_is_passed_to_benchmarks_that_have_one(tmp_path, monkeypatch, bench_package):
    write_fake_package(tmp_path)
    (tmp_path / "fakebench" / "bench_dry.py").write_text(
        '"""Has a dry run."""\ndef run(*, quick, out_dir, dry_run=False):\n    return {"dry_run": dry_run}\n'
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    path = bench_package.run_benchmark("dry", dry_run=True, out_dir=tmp_path / "o", package="fakebench", say=str)
    record = json.loads(path.read_text())
    assert path.name == "dry_dry_run.json" and record["dry_run"] is True and record["result"] == {"dry_run": True}
    with pytest.raises(bench_package.BenchmarkError, match="benchmark 'echo' has no dry run"):
        bench_package.run_benchmark("echo", dry_run=True, out_dir=tmp_path / "o", package="fakebench", say=str)


def test_json_safe(bench_package):
    value = {"a": (1, np.float64(math.inf)), "b": Path("x"), 3: np.array([[1.0, np.nan]])}
    assert bench_package.json_safe(value) == {"a": [1, None], "b": "x", "3": [[1.0, None]]}


# --------------------------------------------------------------------------- search-efficiency rules


def result(energy_per_atom: float, *, atoms=None, status: str = "ok", steps: int = 10) -> RelaxResult:
    atoms = atoms if atoms is not None else bulk("Cu", "fcc", a=3.6)
    n = len(atoms)
    return RelaxResult(id="x", source="random", status=status, reason="", atoms=atoms, energy=energy_per_atom * n,
                       enthalpy=energy_per_atom * n, volume=atoms.get_volume(), pressure=0.0, steps=steps,
                       converged=True, wall_time=1.0)  # fmt: skip


def test_score_hand_worked(bench_package):
    from pymatgen.analysis.structure_matcher import StructureMatcher

    from bench._search_efficiency_scoring import score

    reference = result(-3.0)
    # Seeds in index order: 20 meV above in another structure (miss), failed (miss),
    # 4 meV above (hit by energy), the reference structure itself 50 meV higher (hit by match).
    other = bulk("Cu", "bcc", a=2.87)
    seeds = [
        result(-2.98, atoms=other),
        result(math.nan, status="failed", steps=3),
        result(-2.996, atoms=other, steps=20),
        result(-2.95, steps=30),
    ]
    out = score(seeds, reference, StructureMatcher())
    assert [s["hit"] for s in out["seeds"]] == [False, False, True, True]
    assert out["hits"] == 2 and out["p"] == 0.5 and out["first_hit"] == 3
    assert out["p_est"] == pytest.approx(2.5 / 5) and out["expected_relaxations"] == pytest.approx(2.0)
    assert out["censored"] is False and out["failed"] == 1
    assert out["steps_per_seed"] == pytest.approx((10 + 3 + 20 + 30) / 4)
    np.testing.assert_allclose(out["best_mev_above_ref"], [20.0, 20.0, 4.0, 4.0], atol=1e-6)


def test_score_zero_hits_is_censored_with_the_pseudo_count(bench_package):
    from pymatgen.analysis.structure_matcher import StructureMatcher

    from bench._search_efficiency_scoring import score

    other = bulk("Cu", "bcc", a=2.87)
    out = score([result(-2.9, atoms=other)] * 9, result(-3.0), StructureMatcher())
    assert out["hits"] == 0 and out["censored"] is True
    assert out["expected_relaxations"] == pytest.approx(20.0)  # 1 / (0.5 / 10)


def test_summarise_geometric_means_and_ratios(bench_package):
    from bench._search_efficiency_scoring import summarise

    def stats(expected: float, hits: int = 1) -> dict:
        return {"expected_relaxations": expected, "hits": hits, "n": 4, "steps_per_seed": 10.0, "wall_s_per_seed": 1.0}

    per_target = [
        {"bin": "1-6", "sources": {"random": stats(8.0), "template": stats(2.0)}},
        {"bin": "1-6", "sources": {"random": stats(2.0), "template": stats(2.0)}},
        {"bin": "1-6", "sources": {"random": stats(4.0, hits=0)}},  # no template for this one
    ]
    out = summarise(per_target, ["random", "template"], ["1-6"])["1-6"]
    assert out["sources"]["random"]["expected_relaxations_geomean"] == pytest.approx(4.0)  # (8 * 2 * 4) ** (1/3)
    assert out["sources"]["random"]["targets_hit"] == 2
    assert out["sources"]["template"]["targets"] == 2
    assert out["ratios"]["template/random"] == {"geomean": pytest.approx(0.5), "targets": 2}  # sqrt(1/4 * 1)
    assert "unimat/random" not in out["ratios"]


def test_held_out_targets_are_unseen_binned_and_fixed(bench_package, shared_data, monkeypatch):
    from dataclasses import replace

    from ase_unimat.evaluation.reference import TRAINING_SOURCES, load_reference_records
    from bench._search_efficiency_config import BINS, DEFAULT
    from bench._search_efficiency_targets import held_out_targets

    monkeypatch.setenv("UNIMAT_SHARED_DATA", str(shared_data))
    config = replace(DEFAULT, per_bin=2)
    targets = held_out_targets(config)
    assert len(targets) == 6 and targets == held_out_targets(config)
    seen = {r.reduced_formula for r in load_reference_records(shared_data, sources=TRAINING_SOURCES, max_atoms=None)}
    for t in targets:
        low, high = BINS[t.bin]
        assert low <= t.natoms <= high and t.formula not in seen
    quick = held_out_targets(replace(DEFAULT, per_bin=1))
    assert [t.material_id for t in quick] == [t.material_id for t in targets[::2]]  # quick is a prefix per bin
    alone = held_out_targets(replace(config, bins=("7-12",)))  # a bin's draw does not depend on the others asked for
    assert alone == [t for t in targets if t.bin == "7-12"]
    assert held_out_targets(replace(config, bins=("13-20", "1-6"))) == targets[4:] + targets[:2]
