"""Training runs: log, checkpoints and the exported model; sampling the result; the loss falls."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from trainer_fixtures import final_state, run_tiny, tiny_config

from ase_unimat.model.checkpoint import LAST_NAME, step_name
from ase_unimat.model.config import from_dict
from ase_unimat.model.diffusion import build_model
from ase_unimat.training.data_order import collate
from ase_unimat.training.loaders import default_dataset
from ase_unimat.training.trainer import train


def test_checkpoints_store_the_train_settings_the_run_used(data, tmp_path):
    train(tiny_config(data), out_dir=tmp_path, total_steps=2, progress=False, overrides={"keep_every": 1})
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    assert state["config"]["train"]["total_steps"] == 2 and state["config"]["train"]["keep_every"] == 1


def test_training_writes_log_checkpoints_and_model(data, tmp_path):
    result = run_tiny(tiny_config(data), tmp_path, overrides={"keep_every": 4, "num_threads": 1})
    assert result.step == 8 and result.epoch == 2 and np.isfinite(result.val_loss)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted([LAST_NAME, step_name(4), step_name(8), "log.jsonl", "model.pt"])
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    train_records = [r for r in records if "loss" in r]
    val_records = [r for r in records if "val_loss" in r]
    assert [r["step"] for r in train_records] == list(range(1, 9))
    assert [r["step"] for r in val_records] == [4, 8]
    for key in ("epoch", "lr", "loss", "coord", "lattice", "grad_norm", "samples_per_s", "wall_time"):
        assert all(np.isfinite(r[key]) for r in train_records), key
    assert train_records[0]["lr"] == pytest.approx(5e-3)  # warm-up of 2 steps: step 2 runs at the full lr
    state = torch.load(tmp_path / LAST_NAME, weights_only=True)
    assert {"config", "model", "ema", "optimizer", "scheduler", "rng", "step", "epoch", "epoch_position"} <= set(state)
    stored = tiny_config(data)  # the config rebuilds from the checkpoint, with the run's overrides in it
    stored.train = stored.train.with_overrides(keep_every=4, num_threads=1)
    assert from_dict(state["config"]) == stored
    model = torch.load(tmp_path / "model.pt", weights_only=True)
    for name, tensor in model["model"].items():
        assert torch.equal(tensor, state["ema"][name])
    assert any(not torch.equal(state["ema"][n], state["model"][n]) for n in state["model"])
    assert int(model["model"]["prior_compositions.rows"]) == 4  # stored sparse
    assert model["model"]["seen_elements"].sum() == 6  # Si Na Cl Cu Ga As
    rebuilt = build_model(from_dict(model["config"]))
    rebuilt.load_state_dict(model["model"])
    prior = rebuilt.prior_compositions  # the empirical composition prior of the training set
    assert prior.shape == (4, 9, 18) and int(prior.sum()) > 0


def test_trained_model_loads_and_samples_with_generate(data, tmp_path):
    from ase_unimat.generation import generate, load_model

    run_tiny(tiny_config(data, total_steps=2, val_every=0), tmp_path)
    model = load_model(tmp_path / "model.pt", device="cpu")
    structures = generate("NaCl", 2, model=model, steps=3, seed=7, device="cpu")
    assert [a.get_chemical_formula() for a in structures] == ["ClNa", "ClNa"]


def test_validation_loss_goes_down(data, tmp_path):
    """The EMA model's validation loss (fixed noise, so comparable between evaluations) falls."""
    config = tiny_config(
        data, total_steps=120, warmup_steps=10, val_every=20, log_every=20, checkpoint_every=120, lr=3e-2
    )
    run_tiny(config, tmp_path)
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    val = [r["val_loss"] for r in records if "val_loss" in r]
    assert len(val) == 6 and val[-1] < 0.95 * val[0]  # a trainer that does not learn gives equal values


def test_data_with_other_slot_count_is_refused(data, tmp_path):
    config = tiny_config(data)
    config.model.n_slots = 5
    with pytest.raises(ValueError, match="L = 4 slots but the model has 5"):
        run_tiny(config, tmp_path)



def test_bf16_on_cpu_trains_and_validates_in_full_precision(data, tmp_path):
    """``train.bf16`` autocasts the CPU training steps too; validation stays float32, so its losses
    compare with those of float32 runs (a bf16 forward gives other numbers)."""
    settings = {"total_steps": 120, "warmup_steps": 10, "val_every": 20, "log_every": 20, "checkpoint_every": 120,
                "lr": 3e-2}  # those of test_validation_loss_goes_down
    config = tiny_config(data, bf16=True, **settings)
    plain = tiny_config(data, **settings)
    run_tiny(config, tmp_path / "bf16")
    run_tiny(plain, tmp_path / "fp32")
    logs = {name: [json.loads(line) for line in (tmp_path / name / "log.jsonl").read_text().splitlines()]
            for name in ("bf16", "fp32")}  # fmt: skip
    val = {name: [r["val_loss"] for r in records if "val_loss" in r] for name, records in logs.items()}
    assert len(val["bf16"]) == 6 and val["bf16"][-1] < 0.95 * val["bf16"][0]
    train_loss = {name: [r["loss"] for r in records if "loss" in r] for name, records in logs.items()}
    assert train_loss["bf16"][0] != train_loss["fp32"][0]  # the step ran in bf16, not ignored on CPU

    state = final_state(tmp_path / "bf16")
    model = build_model(from_dict(state["config"]))
    model.load_state_dict(state["ema"])
    dataset = default_dataset(str(data["val"]), in_memory=True)
    batch = collate([{**dataset[i], "index": i} for i in range(len(dataset))])
    with torch.no_grad():
        fp32, _ = model.loss(batch, generator=torch.Generator().manual_seed(1))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16, _ = model.loss(batch, generator=torch.Generator().manual_seed(1))
    assert float(fp32) != float(bf16)  # so a bf16 validation would be told apart from the float32 one
