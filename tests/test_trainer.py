"""The training loop: data order, schedule, logging, checkpoints, exact resume, kill safety, gloo DDP."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.build import bulk
from torch import nn

from ase_unimat.checkpoint import LAST_NAME, latest_checkpoint, load_checkpoint, step_name
from ase_unimat.representation import composition_of, encode_batch
from ase_unimat.trainer import (
    EpochBatchSampler,
    EpochKeyedDataset,
    TrainOptions,
    epoch_permutation,
    step_seed,
    train,
    warmup_cosine,
)

TESTS = Path(__file__).resolve().parent

# -- a tiny stand-in model and dataset with the contract of ARCHITECTURE.md ---------------------------


@dataclasses.dataclass
class StandInModelConfig:
    width: int = 16
    dropout: float = 0.1
    sleep_s: float = 0.0  # slows each step so a test can kill a run mid-way


@dataclasses.dataclass
class StandInTrainConfig:
    train_path: str = ""
    val_path: str = ""
    batch_size: int = 4
    lr: float = 1e-2
    warmup_steps: int = 2
    max_steps: int = 8
    ema_decay: float = 0.9
    val_every: int = 4
    checkpoint_every: int = 2
    keep_every: int = 4
    log_every: int = 1
    seed: int = 0
    num_workers: int = 0
    num_threads: int = 1


@dataclasses.dataclass
class StandInConfig:
    model: StandInModelConfig = dataclasses.field(default_factory=StandInModelConfig)
    train: StandInTrainConfig = dataclasses.field(default_factory=StandInTrainConfig)


class StandInModel(nn.Module):
    """Denoises the scaled lattice given the first slot of every element (order-dependent, so augmentation matters)."""

    def __init__(self, config: StandInConfig) -> None:
        super().__init__()
        self.config = config
        width = config.model.width
        self.net = nn.Sequential(
            nn.Linear(11, width), nn.SiLU(), nn.Dropout(config.model.dropout), nn.Linear(width, 6)
        )
        self.register_buffer("scale", torch.tensor([10.0, 10.0, 10.0, 180.0, 180.0, 180.0]))

    def loss(self, batch: dict, *, generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
        if self.config.model.sleep_s:
            time.sleep(self.config.model.sleep_s)
        coords = batch["coords"]  # (B, L, 9, 18, 3)
        b = coords.shape[0]
        first = coords[:, 0].reshape(b, -1, 3)  # (B, 162, 3)
        occupied = (first > -0.5).all(-1, keepdim=True).float()  # (B, 162, 1)
        mean_first = (first * occupied).sum(1) / occupied.sum(1).clamp(min=1)  # (B, 3)
        t = torch.rand(b, 1, generator=generator, device=coords.device)  # (B, 1)
        noise = torch.randn(b, 6, generator=generator, device=coords.device)  # (B, 6)
        clean = batch["lattice"] / self.scale  # (B, 6)
        noisy = clean + 0.1 * t * noise  # (B, 6)
        natoms = batch["natoms"].float()[:, None] / 20  # (B, 1)
        pred = self.net(torch.cat([noisy, mean_first, t, natoms], dim=-1))  # (B, 6)
        loss = ((pred - clean) ** 2).mean()
        return loss, {"loss_lattice": float(loss.detach())}


class StandInDataset(torch.utils.data.Dataset):
    """Items of an ``.npz`` with ``coords`` (N, L, 9, 18, 3) and ``lattice`` (N, 6)."""

    def __init__(self, path: str, *, in_memory: bool = True) -> None:
        data = np.load(path)
        self.coords, self.lattice = data["coords"], data["lattice"].astype(np.float32)

    def __len__(self) -> int:
        return len(self.coords)

    def __getitem__(self, index: int) -> dict:
        composition = composition_of(self.coords[index])  # (9, 18)
        return {
            "coords": torch.from_numpy(self.coords[index]),
            "lattice": torch.from_numpy(self.lattice[index]),
            "composition": torch.from_numpy(composition.astype(np.float32)),
            "natoms": torch.tensor(int(composition.sum())),
            "index": index,
        }


def write_standin_data(path: Path, *, n: int, seed: int) -> Path:
    """``n`` rattled, strained copies of a few bulk crystals, encoded with L = 4."""
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
    coords, lattice = encode_batch(structures, n_slots=4)
    np.savez(path, coords=coords, lattice=lattice)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("data")
    return {
        "train": write_standin_data(folder / "train.npz", n=18, seed=1),
        "val": write_standin_data(folder / "val.npz", n=6, seed=2),
    }


def standin_config(data: dict[str, Path], **train_fields) -> StandInConfig:
    model_fields = {k: train_fields.pop(k) for k in ("sleep_s", "dropout") if k in train_fields}
    return StandInConfig(
        model=StandInModelConfig(**model_fields),
        train=StandInTrainConfig(**{"train_path": str(data["train"]), "val_path": str(data["val"]), **train_fields}),
    )


def run_standin(config: StandInConfig, out_dir: Path, **kwargs):
    return train(
        config, out_dir=out_dir, device="cpu", progress=False, build_model=StandInModel,
        make_dataset=StandInDataset, **kwargs,
    )  # fmt: skip


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
    base = StandInDataset(str(data["train"]))
    keyed = EpochKeyedDataset(base, seed=3, augment=True)
    a, again = keyed[(0, 2)], keyed[(0, 2)]  # item 2: four Cu atoms, 24 orders
    assert torch.equal(a["coords"], again["coords"])
    assert not all(torch.equal(a["coords"], keyed[(epoch, 2)]["coords"]) for epoch in range(1, 6))
    assert np.array_equal(composition_of(a["coords"].numpy()), composition_of(base[2]["coords"].numpy()))
    plain_item = EpochKeyedDataset(base, seed=3, augment=False)[(1, 2)]
    assert torch.equal(plain_item["coords"], base[2]["coords"])


def test_step_seeds_differ_by_step_and_rank():
    seeds = {step_seed(0, s, r) for s in range(50) for r in range(4)}
    assert len(seeds) == 200 and all(0 <= s < 2**63 for s in seeds)


def test_options_read_config_with_defaults_and_reject_nonsense(data):
    options = TrainOptions.from_config(standin_config(data), max_steps=30)
    assert options.max_steps == 30 and options.batch_size == 4 and options.train_path == (str(data["train"]),)
    assert options.grad_clip == TrainOptions.grad_clip  # not in the stand-in config: the documented default
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        TrainOptions.from_config(standin_config(data, batch_size=0))
    with pytest.raises(ValueError, match="no training data"):
        TrainOptions.from_config(standin_config(data, train_path=""))
    with pytest.raises(ValueError, match="ema_decay"):
        TrainOptions.from_config(standin_config(data, ema_decay=1.0))


# -- training runs ----------------------------------------------------------------------------------


def test_training_writes_log_checkpoints_and_model(data, tmp_path):
    result = run_standin(standin_config(data), tmp_path)
    assert result.step == 8 and result.epoch == 2 and result.val_loss is not None
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted([LAST_NAME, step_name(4), step_name(8), "log.jsonl", "model.pt"])
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    train_records = [r for r in records if "loss" in r]
    val_records = [r for r in records if "val_loss" in r]
    assert [r["step"] for r in train_records] == list(range(1, 9))
    assert [r["step"] for r in val_records] == [4, 8]
    for key in ("epoch", "lr", "loss", "loss_lattice", "grad_norm", "samples_per_s", "wall_time"):
        assert all(np.isfinite(r[key]) for r in train_records), key
    assert train_records[0]["lr"] == pytest.approx(1e-2)  # after warm-up step 1 of 2 the next lr is full
    state = torch.load(tmp_path / LAST_NAME, weights_only=True)
    assert {"config", "model", "ema", "optimizer", "scheduler", "rng", "step", "epoch", "epoch_position"} <= set(state)
    assert state["config"]["train"]["batch_size"] == 4 and state["config"]["model"]["width"] == 16
    model = torch.load(tmp_path / "model.pt", weights_only=True)
    for name, tensor in model["model"].items():
        assert torch.equal(tensor, state["ema"][name])
    assert any(not torch.equal(state["ema"][n], state["model"][n]) for n in state["model"])


def test_loss_goes_down_on_a_small_set(data, tmp_path):
    config = standin_config(data, max_steps=60, log_every=10, val_every=0, checkpoint_every=60, keep_every=0)
    run_standin(config, tmp_path)
    losses = [json.loads(line)["loss"] for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_interrupted_and_resumed_run_is_bit_identical(data, tmp_path, num_workers):
    config = standin_config(data, max_steps=9, checkpoint_every=3, val_every=3, num_workers=num_workers)
    run_standin(config, tmp_path / "whole")
    stopped = run_standin(config, tmp_path / "split", stop_at=5)  # checkpoints at 3 and at the stop
    assert stopped.step == 5 and stopped.model is None and not (tmp_path / "split" / "model.pt").exists()
    assert final_state(tmp_path / "split")["epoch_position"] == 4 * 5 % 16
    resumed = run_standin(config, tmp_path / "split")
    assert resumed.step == 9
    assert_same_training_state(final_state(tmp_path / "whole"), final_state(tmp_path / "split"))
    whole_log = (tmp_path / "whole" / "log.jsonl").read_text().splitlines()
    split_log = (tmp_path / "split" / "log.jsonl").read_text().splitlines()
    losses = [[json.loads(line).get("loss") for line in log] for log in (whole_log, split_log)]
    assert losses[0] == losses[1]  # same steps logged once each, same values


def test_no_resume_starts_over(data, tmp_path):
    config = standin_config(data, max_steps=4)
    run_standin(config, tmp_path)
    again = run_standin(config, tmp_path, resume=False)
    assert again.step == 4
    steps = [json.loads(line)["step"] for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert steps.count(1) == 1


def test_resume_refuses_a_different_model_config(data, tmp_path):
    run_standin(standin_config(data, max_steps=2), tmp_path)
    other = standin_config(data, max_steps=4)
    other.model.width = 8
    with pytest.raises(ValueError, match="different model config"):
        run_standin(other, tmp_path)


def test_resume_ignores_a_truncated_tmp_checkpoint(data, tmp_path):
    config = standin_config(data, max_steps=6, checkpoint_every=2)
    run_standin(config, tmp_path / "whole")
    run_standin(config, tmp_path / "split", stop_at=4)
    good = (tmp_path / "split" / LAST_NAME).read_bytes()
    stale = tmp_path / "split" / f".{LAST_NAME}.x1y2.tmp"
    stale.write_bytes(good[:1000])  # a kill -9 during the write of step 6
    run_standin(config, tmp_path / "split")
    assert not stale.exists()
    assert_same_training_state(final_state(tmp_path / "whole"), final_state(tmp_path / "split"))


def _standin_main(out_dir: str, train_path: str, val_path: str) -> None:
    """Entry point of the killed subprocess (see the kill test)."""
    data = {"train": Path(train_path), "val": Path(val_path)}
    config = standin_config(data, max_steps=12, checkpoint_every=1, keep_every=0, sleep_s=0.05)
    run_standin(config, Path(out_dir))


def test_kill_9_during_training_then_rerun_resumes_without_corruption(data, tmp_path):
    config = standin_config(data, max_steps=12, checkpoint_every=1, keep_every=0, sleep_s=0.05)
    run_standin(config, tmp_path / "whole")
    out = tmp_path / "killed"
    code = (
        f"import sys; sys.path.insert(0, {str(TESTS)!r}); import test_trainer as t; "
        f"t._standin_main({str(out)!r}, {str(data['train'])!r}, {str(data['val'])!r})"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-c", code], env=env)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            last = out / LAST_NAME
            if last.is_file() and _readable_step(last) >= 4:
                break
            time.sleep(0.02)
        time.sleep(0.13)  # land somewhere inside a later step or checkpoint write
        assert process.poll() is None, "the run finished before it could be killed"
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    killed_at = load_checkpoint(latest_checkpoint(out))["step"]
    assert 4 <= killed_at < 12
    run_standin(config, out)
    assert_same_training_state(final_state(tmp_path / "whole"), final_state(out))


def _readable_step(path: Path) -> int:
    try:
        return int(load_checkpoint(path)["step"])
    except Exception:
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
    config = standin_config(data, max_steps=4, batch_size=2, checkpoint_every=2, keep_every=0, val_every=2)
    built: list[nn.Module] = []  # keeps this rank's live replica to compare its final weights

    def build(cfg):
        built.append(StandInModel(cfg))
        return built[-1]

    result = train(
        config, out_dir=Path(out_dir), device="cpu", progress=False, build_model=build, make_dataset=StandInDataset
    )
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
    initial = StandInModel(standin_config(data)).state_dict()  # weights moved, identically on both ranks
    assert any(not torch.equal(initial[n], ranks[0]["model"][n]) for n in initial)
    state = final_state(tmp_path)
    assert state["world_size"] == 2 and len(state["rng"]) == 2 and state["epoch_position"] == 0
    assert (tmp_path / "model.pt").is_file()
