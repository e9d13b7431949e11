"""Warm start from an exported model (``train.init_from``, ``unimat-train --init-from``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from trainer_fixtures import assert_same_training_state, final_state, run_tiny, tiny_config, write_toml

from ase_unimat.model.config import configs_dir, load_config

TESTS = Path(__file__).resolve().parent


def test_init_from_starts_model_and_ema_from_the_export_with_a_fresh_optimiser(data, tmp_path):
    source = run_tiny(tiny_config(data, total_steps=4), tmp_path / "a")
    exported = torch.load(source.model, weights_only=True)
    # an lr far below float32 resolution: after one step the weights are still the ones loaded
    config = tiny_config(data, total_steps=1, lr=1e-30, init_from=str(source.model), val_every=0)
    run_tiny(config, tmp_path / "b")
    state = final_state(tmp_path / "b")
    for key in ("model", "ema"):
        for name, value in exported["model"].items():
            if value.is_floating_point() and name != "prior_compositions":
                assert torch.allclose(state[key][name], value, atol=1e-20), f"{key}.{name}"
    assert state["init_from"] == {"path": str(source.model), "step": 4}
    assert state["scheduler"]["last_epoch"] == 1 and all(int(s["step"]) == 1 for s in state["optimizer"]["state"].values())
    first = json.loads((tmp_path / "b" / "log.jsonl").read_text().splitlines()[0])
    assert first["step"] == 0 and first["init_from"] == str(source.model) and first["init_step"] == 4


def test_init_from_is_not_applied_again_when_the_run_resumes(data, tmp_path):
    source = run_tiny(tiny_config(data, total_steps=4), tmp_path / "a")
    config = tiny_config(data, total_steps=6, init_from=str(source.model))
    run_tiny(config, tmp_path / "whole")
    run_tiny(config, tmp_path / "split", stop_at=3)
    run_tiny(config, tmp_path / "split")  # resumes at step 3 from its own checkpoint
    assert_same_training_state(final_state(tmp_path / "whole"), final_state(tmp_path / "split"))
    log = [json.loads(line) for line in (tmp_path / "split" / "log.jsonl").read_text().splitlines()]
    assert sum("init_from" in record for record in log) == 1
    assert final_state(tmp_path / "split")["init_from"]["step"] == 4


def test_init_from_another_architecture_is_refused(data, tmp_path):
    source = run_tiny(tiny_config(data, total_steps=2), tmp_path / "a")
    other = tiny_config(data, total_steps=2, init_from=str(source.model))
    other.model.width = 8
    with pytest.raises(ValueError, match=r"another architecture than the config's \[model\] \(width 16 != 8\)"):
        run_tiny(other, tmp_path / "b")


def test_cli_init_from(data, tmp_path):
    from ase_unimat.cli.train import main

    toml = write_toml(tiny_config(data), tmp_path / "tiny.toml")
    first = CliRunner().invoke(main, [str(toml), "--out", str(tmp_path / "a"), "--no-progress", "--max-steps", "2"])
    assert first.exit_code == 0, first.output
    model = tmp_path / "a" / "model.pt"
    args = [str(toml), "--out", str(tmp_path / "b"), "--no-progress", "--max-steps", "2", "--init-from", str(model)]
    second = CliRunner().invoke(main, args)
    assert second.exit_code == 0, second.output
    assert load_config(tmp_path / "b" / "config.toml").train.init_from == str(model)
    assert final_state(tmp_path / "b")["init_from"] == {"path": str(model), "step": 2}
    shipped = TESTS.parents[1] / "models" / "unimat-mp20"
    refused = CliRunner().invoke(main, [
        str(configs_dir() / "test.toml"), "--out", str(tmp_path / "c"), "--no-progress", "--max-steps", "1",
        "--set", f'train.train_data="{shipped / "reference.h5"}"', "--set", 'train.val_data=""',
        "--init-from", str(shipped / "model.pt"),
    ])  # fmt: skip
    assert refused.exit_code != 0 and "another architecture than the config's [model]" in refused.output
    assert "Traceback" not in refused.output and len(refused.output.strip().splitlines()) == 1

