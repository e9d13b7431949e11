"""Issue 16, item 8: a malicious, truncated, empty or mismatched --model is one clear error."""

from __future__ import annotations

import os
import pickle

import pytest
import torch
from ase_unimat.cli.sample import main as sample_main
from click.testing import CliRunner
from model_fixtures import tiny_config

from ase_unimat.generation import load_model
from ase_unimat.model.checkpoint import CheckpointError
from ase_unimat.model.config import to_dict
from ase_unimat.model.diffusion import build_model


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.fixture(scope="module")
def bad_models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad")
    model = build_model(tiny_config("atoms"))
    good = folder / "good.pt"
    torch.save({"config": to_dict(model.config), "model": model.state_dict(), "ema": model.state_dict()}, good)
    files = {
        "empty": b"",
        "truncated": good.read_bytes()[: good.stat().st_size // 2],
        "garbage": b"\x00not a checkpoint" * 20,
        "malicious": pickle.dumps(Evil()),
    }
    paths = {}
    for name, data in files.items():
        paths[name] = folder / f"{name}.pt"
        paths[name].write_bytes(data)
    other = build_model(tiny_config("dense"))
    paths["mismatched"] = folder / "mismatched.pt"
    torch.save({"config": to_dict(model.config), "ema": other.state_dict()}, paths["mismatched"])
    paths["bad_config"] = folder / "bad_config.pt"
    torch.save({"config": {"model": {"no_such_option": 1}}, "ema": model.state_dict()}, paths["bad_config"])
    paths["config_not_dict"] = folder / "config_not_dict.pt"
    torch.save({"config": [1, 2], "ema": model.state_dict()}, paths["config_not_dict"])
    return paths


NAMES = ["empty", "truncated", "garbage", "malicious", "mismatched", "bad_config", "config_not_dict"]


@pytest.mark.parametrize("name", NAMES)
def test_load_model_raises_checkpoint_error(bad_models, name):
    with pytest.raises(CheckpointError):
        load_model(bad_models[name], device="cpu")


@pytest.mark.parametrize("name", NAMES)
def test_unimat_sample_says_one_line(bad_models, name, tmp_path):
    args = ["--model", str(bad_models[name]), "--formula", "MgO", "-n", "1", "--steps", "2", "--device", "cpu",
            "--out", str(tmp_path / "o.extxyz"), "--quiet"]  # fmt: skip
    result = CliRunner().invoke(sample_main, args)
    assert result.exit_code != 0
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exception
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.output
    assert "Traceback" not in result.output and not (tmp_path / "o.extxyz").exists()
