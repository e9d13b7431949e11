"""Distributed training on the CPU: one process under torchrun, two gloo processes (torchrun without the launcher)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import torch
from torch import nn
from trainer_fixtures import final_state, run_tiny, tiny_config

from ase_unimat.model.diffusion import build_model


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

