"""What the training loop reads from ``config.train``: :class:`TrainOptions`, checked once.

``TrainOptions`` repeats the fields of :class:`ase_unimat.model.config.TrainConfig` and adds seven
that the config does not have yet (with their defaults here); the two are to become one dataclass.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any


@dataclasses.dataclass(frozen=True)
class TrainOptions:
    """Everything the loop reads from ``config.train`` (``ase_unimat.model.config.TrainConfig``).

    A field that ``TrainConfig`` does not have takes the default below (today: ``min_lr_ratio``,
    ``betas``, ``val_batches``, ``keep_every``, ``in_memory``, ``num_threads``,
    ``find_unused_parameters``). ``batch_size`` is per process (the global batch is
    ``batch_size * world_size``); ``total_steps`` counts optimiser steps and sets the length of the
    cosine decay, which ends at ``lr * min_lr_ratio``; ``keep_every = 0`` keeps only the last
    checkpoint; ``val_every = 0`` disables validation and ``val_batches = 0`` validates on the whole
    file; ``num_workers = -1`` means 0 on CPU and 4 per GPU; ``num_threads = 0`` means the CPU cores
    divided by the processes on this node.
    """

    train_data: tuple[str, ...] = ()
    val_data: str | None = None
    batch_size: int = 64
    lr: float = 1e-3
    min_lr_ratio: float = 0.05
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 200
    total_steps: int = 20_000
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    val_every: int = 500
    val_batches: int = 0
    checkpoint_every: int = 500
    keep_every: int = 0
    log_every: int = 50
    seed: int = 0
    permute_slots: bool = True
    in_memory: bool = True
    num_workers: int = 0
    num_threads: int = 0
    bf16: bool = False
    compile: bool = False
    find_unused_parameters: bool = False
    device: str = "auto"
    init_from: str | None = None

    @classmethod
    def from_config(cls, config: Any, **overrides: Any) -> TrainOptions:
        """Options from ``config.train``, then ``overrides`` (those not None) on top."""
        section = getattr(config, "train", None)
        names = [field.name for field in dataclasses.fields(cls)]
        unknown = sorted(set(overrides) - set(names))
        if unknown:
            raise ValueError(f"unknown training option(s): {', '.join(unknown)}")
        values = {name: getattr(section, name) for name in names if hasattr(section, name)}
        values.update({name: value for name, value in overrides.items() if value is not None})
        paths = values.get("train_data", ())
        paths = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
        values["train_data"] = tuple(str(path) for path in paths if str(path))
        values["val_data"] = str(values.get("val_data") or "") or None
        values["init_from"] = str(values.get("init_from") or "") or None
        if "betas" in values:
            values["betas"] = tuple(float(b) for b in values["betas"])
        options = cls(**values)
        options.check()
        return options

    def check(self) -> None:
        """Raise ``ValueError`` naming the first impossible option."""
        if not self.train_data:
            raise ValueError("config.train names no training data (train_data)")
        for name in ("batch_size", "total_steps", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("warmup_steps", "val_every", "val_batches", "keep_every", "num_threads"):
            if getattr(self, name) < 0:
                raise ValueError(f"train.{name} must be >= 0, got {getattr(self, name)}")
        if self.lr <= 0 or not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"need lr > 0 and 0 <= min_lr_ratio <= 1, got {self.lr}, {self.min_lr_ratio}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"train.ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"train.device must be 'auto', 'cpu' or 'cuda', got {self.device!r}")
