"""Exact resume: interrupted runs, older checkpoints, torn temporary files and kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from trainer_fixtures import assert_same_training_state, final_state, run_tiny, tiny_config

from ase_unimat.model.checkpoint import LAST_NAME, CheckpointError, latest_checkpoint, load_checkpoint
from ase_unimat.model.config import UniMatConfig, to_dict
from ase_unimat.training.resume import model_sections

TESTS = Path(__file__).resolve().parent


@pytest.mark.parametrize("num_workers", [0, 2])
def test_interrupted_and_resumed_run_is_bit_identical(data, tmp_path, num_workers):
    config = tiny_config(data, total_steps=9, checkpoint_every=3, val_every=3, num_workers=num_workers)
    run_tiny(config, tmp_path / "whole")
    stopped = run_tiny(config, tmp_path / "split", stop_at=5)  # checkpoints at 3 and at the stop
    assert stopped.step == 5 and stopped.model is None and not (tmp_path / "split" / "model.pt").exists()
    assert final_state(tmp_path / "split")["epoch_position"] == 4 * 5 % 16
    resumed = run_tiny(config, tmp_path / "split")
    assert resumed.step == 9
    assert_same_training_state(final_state(tmp_path / "whole"), final_state(tmp_path / "split"))
    whole_log = (tmp_path / "whole" / "log.jsonl").read_text().splitlines()
    split_log = (tmp_path / "split" / "log.jsonl").read_text().splitlines()
    keys = ("step", "loss", "val_loss", "grad_norm", "lr")
    records = [[{k: json.loads(line).get(k) for k in keys} for line in log] for log in (whole_log, split_log)]
    assert records[0] == records[1]  # same steps logged once each, same values


def test_no_resume_starts_over(data, tmp_path):
    config = tiny_config(data, total_steps=4)
    run_tiny(config, tmp_path)
    again = run_tiny(config, tmp_path, resume=False)
    assert again.step == 4
    steps = [json.loads(line)["step"] for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert steps.count(1) == 1


def test_resume_refuses_a_different_model_config(data, tmp_path):
    run_tiny(tiny_config(data, total_steps=2), tmp_path)
    other = tiny_config(data, total_steps=4)
    other.model.width = 8
    with pytest.raises(ValueError, match="different model config"):
        run_tiny(other, tmp_path)


def test_resume_accepts_a_checkpoint_written_before_a_config_field_existed(data, tmp_path):
    from ase_unimat.model.checkpoint import atomic_save

    config = tiny_config(data, total_steps=4)
    run_tiny(config, tmp_path, stop_at=2)
    state = final_state(tmp_path)
    del state["config"]["model"]["spacegroup_condition"], state["config"]["diffusion"]["time_power"]  # older file
    atomic_save(state, tmp_path / LAST_NAME)
    assert run_tiny(config, tmp_path).step == 4
    state = final_state(tmp_path)
    state["config"]["model"]["spacegroup_condition"] = True  # a field at another value than the config's
    atomic_save(state, tmp_path / LAST_NAME)
    with pytest.raises(ValueError, match="different model config"):
        run_tiny(tiny_config(data, total_steps=6), tmp_path)


def test_model_sections_fill_missing_fields_and_drop_train():
    full = to_dict(UniMatConfig())
    older = json.loads(json.dumps(full))
    del older["model"]["spacegroup_condition"]
    older["train"]["lr"] = 1.0
    assert model_sections(older) == model_sections(full) and "train" not in model_sections(full)


def test_resume_ignores_a_truncated_tmp_checkpoint(data, tmp_path):
    config = tiny_config(data, total_steps=6, checkpoint_every=2)
    run_tiny(config, tmp_path / "whole")
    run_tiny(config, tmp_path / "split", stop_at=4)
    good = (tmp_path / "split" / LAST_NAME).read_bytes()
    stale = tmp_path / "split" / f".{LAST_NAME}.x1y2.tmp"
    stale.write_bytes(good[:1000])  # a kill -9 during the write of step 6
    run_tiny(config, tmp_path / "split")
    assert not stale.exists()
    assert_same_training_state(final_state(tmp_path / "whole"), final_state(tmp_path / "split"))


KILL_STEPS = 60


def _kill_config(data: dict[str, Path]) -> UniMatConfig:
    return tiny_config(data, total_steps=KILL_STEPS, checkpoint_every=1, val_every=20, log_every=10)


def _killable_main(out_dir: str, train_path: str, val_path: str) -> None:
    """Entry point of the subprocess the kill test kills."""
    run_tiny(_kill_config({"train": Path(train_path), "val": Path(val_path)}), Path(out_dir))


def test_kill_9_during_training_then_rerun_resumes_without_corruption(data, tmp_path):
    config = _kill_config(data)
    run_tiny(config, tmp_path / "whole")
    out = tmp_path / "killed"
    code = (
        f"import sys; sys.path.insert(0, {str(TESTS)!r}); import test_trainer_resume as t; "
        f"t._killable_main({str(out)!r}, {str(data['train'])!r}, {str(data['val'])!r})"
    )
    process = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            if _readable_step(out / LAST_NAME) >= 5:
                break
            time.sleep(0.01)
        time.sleep(0.037)  # land somewhere inside a later step or checkpoint write
        assert process.poll() is None, "the run finished before it could be killed"
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    killed_at = load_checkpoint(latest_checkpoint(out))["step"]
    assert 5 <= killed_at < KILL_STEPS
    run_tiny(config, out)
    assert_same_training_state(final_state(tmp_path / "whole"), final_state(out))
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert steps == sorted(steps)  # lines the killed run wrote past its checkpoint were dropped


def _readable_step(path: Path) -> int:
    try:
        return int(load_checkpoint(path)["step"])
    except CheckpointError:
        return -1

