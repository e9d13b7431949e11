"""Atomic checkpoint writes, RNG state round trips, weights_only loading and the model export."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from ase_unimat.model.checkpoint import (
    CHECKPOINT_FORMAT,
    LAST_NAME,
    MODEL_FORMAT,
    CheckpointError,
    atomic_save,
    capture_rng_state,
    config_to_dict,
    export_model,
    latest_checkpoint,
    load_checkpoint,
    plain,
    remove_stale_tmp,
    restore_rng_state,
    step_name,
)


def _draws() -> tuple:
    return (torch.rand(3).tolist(), np.random.rand(3).tolist(), [random.random() for _ in range(3)])


def _checkpoint(step: int = 7) -> dict:
    weights = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.ones(2)}
    return {
        "format": CHECKPOINT_FORMAT,
        "version": 1,
        "config": {"model": {"width": 8}, "train": {"lr": 1e-3}},
        "model": weights,
        "ema": {k: v * 0.5 for k, v in weights.items()},
        "rng": [capture_rng_state()],
        "step": step,
    }


def test_rng_state_round_trip_replays_the_same_draws():
    state = capture_rng_state()
    first = _draws()
    restore_rng_state(state)
    assert _draws() == first


def test_rng_state_survives_weights_only_load(tmp_path):
    random.gauss(0, 1)  # leaves a cached gaussian in python's state
    np.random.standard_normal()
    atomic_save({"rng": capture_rng_state()}, tmp_path / "rng.pt")
    first = _draws()
    restore_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True)["rng"])
    assert _draws() == first


def test_atomic_save_loads_with_weights_only_and_leaves_no_tmp(tmp_path):
    path = atomic_save(_checkpoint(), tmp_path / "sub" / LAST_NAME)
    state = load_checkpoint(path)
    assert state["step"] == 7
    torch.testing.assert_close(state["model"]["w"], torch.arange(6.0).reshape(2, 3))
    assert [p.name for p in path.parent.iterdir()] == [LAST_NAME]


def test_failed_save_keeps_the_previous_file_and_no_tmp(tmp_path):
    path = atomic_save(_checkpoint(step=1), tmp_path / LAST_NAME)
    with pytest.raises(Exception):  # noqa: B017 - any pickling error; the point is what is left on disk
        atomic_save({"format": CHECKPOINT_FORMAT, "bad": lambda: None}, path)
    assert load_checkpoint(path)["step"] == 1
    assert list(tmp_path.glob("*.tmp")) == [] and list(tmp_path.glob(".*.tmp")) == []


def test_truncated_tmp_file_is_ignored_and_removed(tmp_path):
    atomic_save(_checkpoint(step=3), tmp_path / LAST_NAME)
    good = (tmp_path / LAST_NAME).read_bytes()
    stale = tmp_path / f".{LAST_NAME}.abc123.tmp"
    stale.write_bytes(good[: len(good) // 2])  # what a kill -9 mid-write leaves behind
    assert latest_checkpoint(tmp_path) == tmp_path / LAST_NAME
    assert load_checkpoint(latest_checkpoint(tmp_path))["step"] == 3
    assert remove_stale_tmp(tmp_path) == [stale]
    assert not stale.exists()


def test_truncated_checkpoint_raises_checkpoint_error(tmp_path):
    path = atomic_save(_checkpoint(), tmp_path / LAST_NAME)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(path)


def test_load_rejects_missing_and_foreign_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an ase-unimat checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_latest_checkpoint_falls_back_to_newest_kept_step(tmp_path):
    assert latest_checkpoint(tmp_path) is None
    for step in (100, 20, 300):
        atomic_save(_checkpoint(step), tmp_path / step_name(step))
    assert latest_checkpoint(tmp_path).name == step_name(300)
    atomic_save(_checkpoint(301), tmp_path / LAST_NAME)
    assert latest_checkpoint(tmp_path).name == LAST_NAME


def test_export_model_keeps_only_ema_weights_and_config(tmp_path):
    ckpt = atomic_save(_checkpoint(step=11), tmp_path / LAST_NAME)
    out = export_model(ckpt, tmp_path / "models" / "tiny")
    assert out == tmp_path / "models" / "tiny" / "model.pt"
    model = torch.load(out, weights_only=True)
    assert model["format"] == MODEL_FORMAT
    assert set(model) == {"format", "version", "config", "model", "step"}
    assert model["step"] == 11 and model["config"]["model"] == {"width": 8}
    torch.testing.assert_close(model["model"]["w"], torch.arange(6.0).reshape(2, 3) * 0.5)


def test_export_model_needs_ema(tmp_path):
    state = _checkpoint()
    del state["ema"]
    with pytest.raises(CheckpointError, match="lacks ema"):
        export_model(state, tmp_path)


@dataclasses.dataclass
class _Inner:
    path: Path
    sizes: tuple[int, ...] = (1, 2)


@dataclasses.dataclass
class _Outer:
    inner: _Inner
    scale: float = np.float32(0.5)


def test_plain_converts_dataclasses_paths_and_numpy_scalars():
    assert plain(_Outer(_Inner(Path("/a/b")))) == {"inner": {"path": "/a/b", "sizes": [1, 2]}, "scale": 0.5}
    assert config_to_dict(_Outer(_Inner(Path("x")))) == {"inner": {"path": "x", "sizes": [1, 2]}, "scale": 0.5}


def test_plain_rejects_objects_weights_only_would_refuse():
    with pytest.raises(TypeError, match="cannot store"):
        plain({"f": object()})
