"""``python -m bench gpu --dry-run``: every section of the GPU benchmark runs on the CPU at tiny sizes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory, bench_module_once) -> tuple[dict, Path]:
    """The runner's record of one dry run, and its output folder (the run takes seconds)."""
    out = tmp_path_factory.mktemp("gpu_dry")
    path = bench_module_once("bench").run_benchmark("gpu", dry_run=True, out_dir=out, say=str)
    return json.loads(path.read_text()), out


def test_every_section_runs_without_error(dry_run):
    record, out = dry_run
    result = record["result"]
    assert record["dry_run"] is True and result["dry_run"] is True
    assert result["errors"] == {} and result["skipped"] == []
    assert list(result["sections"]) == [
        "environment", "bf16_loss", "continued_training", "torchrun", "training", "sampling", "training_compiled",
    ]  # fmt: skip
    assert (out / "gpu_dry_run.json").is_file() and (out / "gpu_dry_run.md").is_file()
    assert not (out / "gpu_dry_run_partial.json").exists()  # removed once the run completes
    assert "## Training" in (out / "gpu_dry_run.md").read_text()


def test_continued_training_resumes_exports_and_reloads(dry_run):
    c = dry_run[0]["result"]["sections"]["continued_training"]
    assert c["start_step"] == 20000
    assert c["checkpoint_step_after_first_call"] == 20000 + c["steps"] // 2
    assert c["final_step"] == c["export_step"] == 20000 + c["steps"]
    assert c["export_format"] == "ase-unimat-model" and c["export_equals_last_ema"] and c["export_weights_finite"]
    assert 0 < c["ema_moved_from_shipped"] and c["val_loss"] is not None
    assert c["export_samples_decoded"] == 4


def test_torchrun_trains_under_the_launcher_with_gloo(dry_run):
    t = dry_run[0]["result"]["sections"]["torchrun"]
    assert t["returncode"] == 0 and t["backend_expected"] == "gloo"
    assert t["steps_logged"] == [1, 2] and t["model_exported"]
    assert t["init_from_logged"].endswith("models/unimat-mp20/model.pt")  # warm start from the shipped export
    assert t["command"].startswith("torchrun --standalone --nproc_per_node 1 -m ase_unimat.cli.train")


def test_training_and_sampling_rows(dry_run):
    sections = dry_run[0]["result"]["sections"]
    rows = sections["training"] + sections["training_compiled"]
    assert {row["case"] for row in rows} == {
        "unimat-mp20", "unimat-mp20 fp32", "unimat-mp-wide", "gpu-dense eager", "gpu-dense compiled",
    }  # fmt: skip
    assert not [row for row in rows + sections["sampling"]["cases"] if "error" in row]
    assert {row["network"] for row in rows} == {"atoms", "dense"}
    assert all(row["steps_per_s"] > 0 and not row["bf16"] and not row["compile"] for row in rows)  # CPU: neither
    sampling = sections["sampling"]
    assert {(row["sampler"], row["bf16_autocast"]) for row in sampling["cases"]} == {
        ("ancestral", False), ("ddim", False), ("ancestral", True),
    }  # fmt: skip
    assert all(row["structures_per_s"] > 0 for row in sampling["cases"]) and sampling["meets_target"] is None
    loss = sections["bf16_loss"]
    assert all(loss["gradients_finite"].values()) and loss["relative_difference"] < 0.1


def test_the_gpu_run_refuses_a_machine_without_cuda(tmp_path, monkeypatch, bench_module):
    bench, gpu = bench_module("bench"), bench_module("bench.gpu")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(bench.BenchmarkError, match="needs a CUDA GPU; on a CPU run it with --dry-run"):
        gpu.run(quick=False, out_dir=tmp_path)


def test_summary_shows_failed_rows_and_missing_values(bench_module):
    summary = bench_module("bench._gpu_report").summary

    result = {
        "command": "python -m bench gpu", "note": "one GPU", "errors": {"torchrun": "RuntimeError: exit 1"},
        "skipped": ["training_compiled: time budget"],
        "sections": {"training": [{"case": "unimat-mp20", "batch": 256, "error": "OutOfMemoryError: CUDA"}]},
    }  # fmt: skip
    text = summary(result)
    assert "| unimat-mp20 | | 256 | | | failed: OutOfMemoryError: CUDA" in text
    assert "**torchrun failed**: RuntimeError: exit 1" in text and "skipped training_compiled" in text
