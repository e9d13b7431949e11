"""The trainer tests' tiny real model on a tiny HDF5 file, and helpers to run and compare training runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from ase.build import bulk

from ase_unimat.data.hdf5 import write_structures
from ase_unimat.model.checkpoint import LAST_NAME, load_checkpoint
from ase_unimat.model.config import ModelConfig, TrainConfig, UniMatConfig, to_dict
from ase_unimat.training.trainer import train


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


def write_toml(config: UniMatConfig, path: Path) -> Path:
    from ase_unimat.cli.train import toml_text

    path.write_text(toml_text(to_dict(config)), encoding="utf-8")
    return path

