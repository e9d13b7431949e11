"""The unimat-train command: TOML round trip, training and resuming, checkpoints kept, one-line errors."""

from __future__ import annotations

import json
import tomllib

import pytest
import torch
from click.testing import CliRunner
from trainer_fixtures import tiny_config, write_toml

from ase_unimat.model.checkpoint import step_name
from ase_unimat.model.config import configs_dir, from_dict, load_config, to_dict


def test_toml_text_round_trips_every_shipped_config():
    from ase_unimat.cli.train import toml_text

    for path in sorted(configs_dir().glob("*.toml")):
        config = load_config(path)
        assert from_dict(tomllib.loads(toml_text(to_dict(config)))) == config, path.name


def test_cli_trains_resumes_and_records_the_effective_config(data, tmp_path):
    from ase_unimat.cli.train import main

    toml = write_toml(tiny_config(data), tmp_path / "tiny.toml")
    out = tmp_path / "run"
    args = [str(toml), "--out", str(out), "--no-progress", "--set", "train.log_every=2", "--set", "model.dropout=0.0"]
    first = CliRunner().invoke(main, [*args, "--max-steps", "4"])
    assert first.exit_code == 0, first.output
    assert "step 4 (epoch 1)" in first.output and (out / "model.pt").is_file()
    written = load_config(out / "config.toml")
    assert written.train.total_steps == 4 and written.train.log_every == 2 and written.model.dropout == 0.0
    second = CliRunner().invoke(main, [*args, "--max-steps", "6"])  # a longer run resumes from step 4
    assert second.exit_code == 0, second.output
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [2, 4, 6]
    assert torch.load(out / "model.pt", weights_only=True)["step"] == 6
    third = CliRunner().invoke(main, [*args, "--max-steps", "6"])  # already there: nothing to do, exit 0
    assert third.exit_code == 0 and "nothing left to train" in third.output
    assert not list(out.glob("checkpoint_0*.pt"))  # only checkpoint_last.pt without --keep-every


def test_cli_keep_every_keeps_numbered_checkpoints(data, tmp_path):
    from ase_unimat.cli.train import main

    toml = write_toml(tiny_config(data), tmp_path / "tiny.toml")
    out = tmp_path / "run"
    result = CliRunner().invoke(main, [str(toml), "--out", str(out), "--no-progress", "--max-steps", "4",
                                       "--keep-every", "2"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (out / step_name(2)).is_file() and (out / step_name(4)).is_file()
    bad = CliRunner().invoke(main, [str(toml), "--out", str(out), "--keep-every", "-1"])
    assert bad.exit_code != 0 and "Traceback" not in bad.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "train.lr"], "expected SECTION.KEY=VALUE"),
        (["--set", "train.learning_rate=1"], "has no key 'learning_rate'"),
        (["--set", "optim.lr=1"], "no config section [optim]"),
        (["--set", "train.batch_size=big"], "train.batch_size must be an integer"),
        (["--set", "train.train_data=/nonexistent/x.h5"], "/nonexistent/x.h5"),
    ],
)
def test_cli_user_mistakes_are_one_line_errors(data, tmp_path, args, message):
    from ase_unimat.cli.train import main

    toml = write_toml(tiny_config(data), tmp_path / "tiny.toml")
    result = CliRunner().invoke(main, [str(toml), "--out", str(tmp_path / "run"), "--no-progress", *args])
    assert result.exit_code != 0 and message in result.output
    assert "Traceback" not in result.output


def test_cli_missing_config_and_help():
    from ase_unimat.cli.train import main

    missing = CliRunner().invoke(main, ["/nonexistent/config.toml"])
    assert missing.exit_code != 0 and "config file not found" in missing.output
    help_text = CliRunner().invoke(main, ["--help"]).output
    assert "torchrun --nproc_per_node" in help_text and "--max-steps" in help_text and "--set" in help_text

