"""The training loop: data order, schedule, logging, checkpoints, exact resume, kill safety, gloo DDP."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.build import bulk
from click.testing import CliRunner
from torch import nn

from ase_unimat.core.representation import composition_of
from ase_unimat.data.hdf5 import write_structures
from ase_unimat.model.checkpoint import LAST_NAME, CheckpointError, latest_checkpoint, load_checkpoint, step_name
from ase_unimat.model.config import ModelConfig, TrainConfig, UniMatConfig, configs_dir, from_dict, load_config, to_dict
from ase_unimat.model.diffusion import build_model
from ase_unimat.training.data_order import EpochBatchSampler, EpochKeyedDataset, epoch_permutation
from ase_unimat.training.dataset import UniMatDataset
from ase_unimat.training.loaders import dataset_compositions
from ase_unimat.training.noise_seed import step_seed
from ase_unimat.training.optim import warmup_cosine
from ase_unimat.training.resume import model_sections
from ase_unimat.training.trainer import train

TESTS = Path(__file__).resolve().parent

# -- a tiny real model on a tiny HDF5 file ---------------------------------------------------------


def write_tiny_data(path: Path, *, n: int, seed: int) -> Path:
    """``n`` rattled, strained copies of a few bulk crystals as a UniMat HDF5 file with L = 4."""
    rng = np.random.default_rng(seed)
    protos = [
        bulk("Si", "diamond", a=5.43),
        bulk("NaCl", "rocksalt", a=5.64),
        bulk("Cu", "fcc", a=3.6, cubic=True),
        bulk("GaAs", "zincblende", a=5.65),
    ]
    structures = []
    for i in range(n):
        atoms = protos[i % len(protos)].copy()
        atoms.set_cell(atoms.cell[:] * (1 + 0.05 * rng.standard_normal()), scale_atoms=True)
        atoms.rattle(0.05, seed=int(rng.integers(1 << 31)))
        structures.append(atoms)
    write_structures(path, structures, n_slots=4)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("data")
    return {
        "train": write_tiny_data(folder / "train.h5", n=18, seed=1),
        "val": write_tiny_data(folder / "val.h5", n=6, seed=2),
    }


def tiny_config(data: dict[str, Path], **train_fields) -> UniMatConfig:
    """A ~8k-parameter atom network (with dropout, so the global RNG matters) on the tiny files."""
    fields = {
        "train_data": str(data["train"]), "val_data": str(data["val"]), "batch_size": 4, "lr": 5e-3,
        "warmup_steps": 2, "total_steps": 8, "ema_decay": 0.9, "val_every": 4, "checkpoint_every": 2,
        "log_every": 1, "seed": 0, "num_workers": 0, "device": "cpu", **train_fields,
    }  # fmt: skip
    model = ModelConfig(n_slots=4, width=16, depth=1, heads=2, time_dim=8, fourier_k=2, n_rbf=4, dropout=0.1)
    return UniMatConfig(name="tiny", model=model, train=TrainConfig(**fields))


def run_tiny(config: UniMatConfig, out_dir: Path, **kwargs):
    kwargs.setdefault("overrides", {"num_threads": 1})
    return train(config, out_dir=out_dir, progress=False, **kwargs)


def final_state(out_dir: Path) -> dict:
    return load_checkpoint(out_dir / LAST_NAME)


def assert_same_training_state(a: dict, b: dict) -> None:
    """Bit-identical weights, EMA, optimiser moments and scheduler."""
    assert a["step"] == b["step"] and a["epoch"] == b["epoch"] and a["epoch_position"] == b["epoch_position"]
    for key in ("model", "ema"):
        assert a[key].keys() == b[key].keys()
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), f"{key}.{name} differs"
    for index, state in a["optimizer"]["state"].items():
        for name, value in state.items():
            assert torch.equal(value, b["optimizer"]["state"][index][name]), f"optimizer {index}.{name} differs"
    assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"]


# -- pure parts -------------------------------------------------------------------------------------


def test_warmup_then_cosine_to_floor():
    lrs = [warmup_cosine(s, warmup_steps=4, max_steps=20, min_ratio=0.1) for s in range(25)]
    assert lrs[:4] == [0.25, 0.5, 0.75, 1.0]
    assert lrs[4] == pytest.approx(1.0)
    assert all(later <= earlier + 1e-12 for earlier, later in zip(lrs[4:], lrs[5:], strict=False))
    assert lrs[20] == pytest.approx(0.1) and lrs[24] == pytest.approx(0.1)
    assert lrs[12] == pytest.approx(0.55)  # half way down the cosine


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_epoch_batches_cover_each_sample_once_and_ranks_are_disjoint(world_size):
    samplers = [EpochBatchSampler(23, batch_size=3, seed=5, rank=r, world_size=world_size) for r in range(world_size)]
    for sampler in samplers:
        sampler.set_epoch(2)
    per_rank = [[key for batch in sampler for key in batch] for sampler in samplers]
    seen = [index for keys in per_rank for _, index in keys]
    steps = 23 // (3 * world_size)
    assert all(len(list(sampler)) == steps == len(sampler) for sampler in samplers)
    assert len(seen) == len(set(seen)) == steps * 3 * world_size
    assert {epoch for keys in per_rank for epoch, _ in keys} == {2}
    assert set(seen) <= set(range(23))


def test_epoch_order_is_seeded_per_epoch_and_resumes_mid_epoch():
    sampler = EpochBatchSampler(20, batch_size=4, seed=0)
    full = list(sampler)
    sampler.set_epoch(1)
    assert list(sampler) != [[(1, i) for _, i in batch] for batch in full]  # a new order each epoch
    sampler.set_epoch(0, position=8)
    assert list(sampler) == full[2:] and len(sampler) == 3
    assert np.array_equal(epoch_permutation(20, seed=0, epoch=0), [i for batch in full for _, i in batch])
    with pytest.raises(ValueError, match="multiple of the global batch"):
        sampler.set_epoch(0, position=6)
    with pytest.raises(ValueError, match="fewer than one global batch"):
        EpochBatchSampler(5, batch_size=3, seed=0, world_size=2)


def test_augmentation_is_seeded_by_epoch_and_index_and_keeps_composition(data):
    base = UniMatDataset(data["train"], in_memory=True)
    keyed = EpochKeyedDataset(base, seed=3, augment=True)
    a, again = keyed[(0, 2)], keyed[(0, 2)]  # item 2: four Cu atoms, 24 orders
    assert torch.equal(a["coords"], again["coords"])
    assert not all(torch.equal(a["coords"], keyed[(epoch, 2)]["coords"]) for epoch in range(1, 6))
    assert np.array_equal(composition_of(a["coords"].numpy()), composition_of(base[2]["coords"].numpy()))
    batch = keyed.__getitems__([(0, 2), (3, 5)])  # the batched read path gives the same items
    assert torch.equal(batch[0]["coords"], a["coords"]) and torch.equal(batch[1]["coords"], keyed[(3, 5)]["coords"])
    plain_item = EpochKeyedDataset(base, seed=3, augment=False)[(1, 2)]
    assert torch.equal(plain_item["coords"], base[2]["coords"])


def test_step_seeds_differ_by_step_rank_and_stream():
    seeds = {step_seed(0, s, r) for s in range(50) for r in range(4)}
    assert len(seeds) == 200 and all(0 <= s < 2**63 for s in seeds)
    assert step_seed(0, 0, 0, stream=1) not in seeds


def test_train_config_overrides_are_checked_and_keep_the_defaults(data):
    train = tiny_config(data).train
    options = train.with_overrides(total_steps=30, keep_every=5, init_from=None)
    assert options.total_steps == 30 and options.keep_every == 5 and options.batch_size == 4
    assert options.train_files == (str(data["train"]),) and options.val_data == str(data["val"])
    assert options.min_lr_ratio == TrainConfig().min_lr_ratio and options.init_from == ""
    assert train.total_steps != 30  # a copy: the config itself is unchanged
    two = train.with_overrides(train_data=[data["train"], data["train"]])
    assert two.train_files == (str(data["train"]),) * 2
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        train.with_overrides(batch_size=0)
    with pytest.raises(ValueError, match="no training data"):
        train.with_overrides(train_data="")
    with pytest.raises(ValueError, match="ema_decay"):
        train.with_overrides(ema_decay=1.0)
    with pytest.raises(ValueError, match="must be an integer"):
        train.with_overrides(keep_every="5")
    with pytest.raises(ValueError, match="unknown training option"):
        train.with_overrides(epochs=3)


def test_checkpoints_store_the_train_settings_the_run_used(data, tmp_path):
    train(tiny_config(data), out_dir=tmp_path, total_steps=2, progress=False, overrides={"keep_every": 1})
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    assert state["config"]["train"]["total_steps"] == 2 and state["config"]["train"]["keep_every"] == 1


def test_dataset_compositions_match_the_items(data):
    base = UniMatDataset(data["train"], in_memory=True)
    compositions = dataset_compositions(base)  # (N, 9, 18), read from the file
    assert compositions.shape == (18, 9, 18)
    assert torch.equal(compositions.float(), torch.stack([base[i]["composition"] for i in range(18)]))


# -- training runs ----------------------------------------------------------------------------------


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


def test_one_process_under_torchrun_joins_a_process_group(monkeypatch):
    from ase_unimat.training.distributed import start_processes

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    for key, value in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": str(port), "TORCHELASTIC_RUN_ID": "test"}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    procs = start_processes("cpu")
    try:
        assert procs.started_group and procs.distributed and procs.world_size == 1
        assert torch.distributed.get_backend() == "gloo"
    finally:
        torch.distributed.destroy_process_group()
    monkeypatch.delenv("TORCHELASTIC_RUN_ID")
    assert not start_processes("cpu").distributed  # a plain single process stays out of any group


# -- warm start from an exported model (train.init_from) -------------------------------------------


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

    toml = _write_toml(tiny_config(data), tmp_path / "tiny.toml")
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


def test_data_with_other_slot_count_is_refused(data, tmp_path):
    config = tiny_config(data)
    config.model.n_slots = 5
    with pytest.raises(ValueError, match="L = 4 slots but the model has 5"):
        run_tiny(config, tmp_path)


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
        f"import sys; sys.path.insert(0, {str(TESTS)!r}); import test_trainer as t; "
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


# -- two CPU processes with gloo (what torchrun does, without the launcher) ------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ddp_worker(rank: int, world_size: int, port: int, out_dir: str, train_path: str, val_path: str) -> None:
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world_size),
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
    )  # fmt: skip
    data = {"train": Path(train_path), "val": Path(val_path)}
    config = tiny_config(data, total_steps=4, batch_size=2, checkpoint_every=2, val_every=2)
    built: list[nn.Module] = []  # keeps this rank's live replica to compare its final weights

    def build(cfg):
        built.append(build_model(cfg))
        return built[-1]

    result = run_tiny(config, Path(out_dir), build_model=build)
    weights = {k: v.detach().clone() for k, v in built[0].state_dict().items()}
    torch.save({"step": result.step, "val_loss": result.val_loss, "model": weights}, Path(out_dir) / f"rank{rank}.pt")


def test_two_gloo_processes_train_identical_replicas(data, tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(
        _ddp_worker,
        args=(2, _free_port(), str(tmp_path), str(data["train"]), str(data["val"])),
        nprocs=2,
        join=True,
    )
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert ranks[0]["step"] == ranks[1]["step"] == 4
    assert ranks[0]["val_loss"] == ranks[1]["val_loss"]  # all-reduced over the two shards
    for name, tensor in ranks[0]["model"].items():
        assert torch.equal(tensor, ranks[1]["model"][name]), name
    torch.manual_seed(0)
    initial = build_model(tiny_config(data)).state_dict()  # the weights moved, identically on both ranks
    assert any(not torch.equal(initial[n], ranks[0]["model"][n]) for n in initial if initial[n].is_floating_point())
    state = final_state(tmp_path)
    assert state["world_size"] == 2 and len(state["rng"]) == 2 and state["epoch_position"] == 0
    assert (tmp_path / "model.pt").is_file()


# -- the unimat-train command ----------------------------------------------------------------------


def _write_toml(config: UniMatConfig, path: Path) -> Path:
    from ase_unimat.cli.train import toml_text

    path.write_text(toml_text(to_dict(config)), encoding="utf-8")
    return path


def test_toml_text_round_trips_every_shipped_config():
    from ase_unimat.cli.train import toml_text

    for path in sorted(configs_dir().glob("*.toml")):
        config = load_config(path)
        assert from_dict(tomllib.loads(toml_text(to_dict(config)))) == config, path.name


def test_cli_trains_resumes_and_records_the_effective_config(data, tmp_path):
    from ase_unimat.cli.train import main

    toml = _write_toml(tiny_config(data), tmp_path / "tiny.toml")
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

    toml = _write_toml(tiny_config(data), tmp_path / "tiny.toml")
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

    toml = _write_toml(tiny_config(data), tmp_path / "tiny.toml")
    result = CliRunner().invoke(main, [str(toml), "--out", str(tmp_path / "run"), "--no-progress", *args])
    assert result.exit_code != 0 and message in result.output
    assert "Traceback" not in result.output


def test_cli_missing_config_and_help():
    from ase_unimat.cli.train import main

    missing = CliRunner().invoke(main, ["/nonexistent/config.toml"])
    assert missing.exit_code != 0 and "config file not found" in missing.output
    help_text = CliRunner().invoke(main, ["--help"]).output
    assert "torchrun --nproc_per_node" in help_text and "--max-steps" in help_text and "--set" in help_text
