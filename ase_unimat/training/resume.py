"""The trainer's checkpoints: what one holds, writing it, resuming from it, and warm-starting from a ``model.pt``.

Owns the training state of a checkpoint (config, model, EMA, optimiser, scheduler and the global
RNG states of every rank; the loop adds its position: step, epoch, epoch position, wall time,
``init_from``), the atomic write on rank 0 (``checkpoint_last.pt`` and the kept
``checkpoint_<step>.pt``), restoring that state into a run (the model config must match), and the
weights of a warm start (``train.init_from``: the EMA weights of an exported ``model.pt`` or a
checkpoint of the same ``[model]`` architecture). The file format itself is
:mod:`ase_unimat.model.checkpoint`'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ase_unimat.model.checkpoint import (
    CHECKPOINT_FORMAT,
    FORMAT_VERSION,
    LAST_NAME,
    atomic_save,
    capture_rng_state,
    config_to_dict,
    load_checkpoint,
    restore_rng_state,
    step_name,
)
from ase_unimat.training.distributed import Processes, or_reduce_flags
from ase_unimat.training.ema import EMA


def model_sections(config: Mapping[str, Any]) -> dict[str, Any]:
    """Every section of a stored config but ``train``, fields that an older file lacks at their defaults.

    Two configs build the same model exactly when these agree; a checkpoint written before a field
    was added (e.g. ``model.spacegroup_condition``) still matches a config that leaves it at its default.
    A dict that is not a ``UniMatConfig`` is compared as it is.
    """
    from ase_unimat.model.config import ConfigError, from_dict, to_dict

    try:
        config = to_dict(from_dict(dict(config)))
    except ConfigError:
        config = dict(config)
    return {key: value for key, value in config.items() if key != "train"}


def training_state(
    config: Any,
    *,
    model: nn.Module,
    ema: EMA,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    procs: Processes,
) -> dict:
    """The checkpoint's format, config, weights, EMA, optimiser, scheduler and per-rank RNG states.

    Collective under DDP (every rank calls it): the boolean buffers are OR-reduced and the RNG states
    gathered. The caller adds the run's position (``step``, ``epoch``, ``epoch_position``,
    ``world_size``, ``wall_time``, ``init_from``).
    """
    if procs.distributed:
        or_reduce_flags(model)
        or_reduce_flags(ema.module)
    rng = capture_rng_state()
    rng_per_rank = [rng]
    if procs.distributed:
        rng_per_rank = [None] * procs.world_size
        torch.distributed.all_gather_object(rng_per_rank, rng)
    return {
        "format": CHECKPOINT_FORMAT,
        "version": FORMAT_VERSION,
        "config": config_to_dict(config),
        "model": model.state_dict(),
        "ema": ema.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": rng_per_rank,
    }


def write_checkpoint(state: dict, out_dir: Path, *, step: int, keep_every: int, procs: Processes) -> Path:
    """Write ``checkpoint_last.pt`` (and ``checkpoint_<step>.pt`` every ``keep_every`` steps) on rank 0; all ranks wait."""
    last = out_dir / LAST_NAME
    if procs.is_main:
        atomic_save(state, last)
        if keep_every and step % keep_every == 0:
            atomic_save(state, out_dir / step_name(step))
    procs.barrier()
    return last


def restore_checkpoint(
    path: Path,
    config: Any,
    *,
    model: nn.Module,
    ema: EMA,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    rank: int,
) -> dict:
    """Load checkpoint ``path`` into the weights, EMA, optimiser and scheduler and restore ``rank``'s RNG states.

    ``ValueError`` when the checkpoint was trained with another model config. Returns the
    checkpoint, whose position (step, epoch, ...) the caller takes over.
    """
    state = load_checkpoint(path, map_location="cpu")
    if model_sections(state["config"]) != model_sections(config_to_dict(config)):
        raise ValueError(f"{path} was trained with a different model config; use another out dir or no resume")
    model.load_state_dict(state["model"])
    ema.load_state_dict(state["ema"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    rng_states = state["rng"]
    restore_rng_state(rng_states[rank % len(rng_states)])
    return state


def warm_start_weights(path: Path, config: Any) -> tuple[dict, int]:
    """The (EMA) weights of an exported ``model.pt`` or checkpoint at ``path``, and the step it was at.

    ``ValueError`` (one line) when the file holds no config and weights, or when its ``[model]``
    section differs from ``config``'s.
    """
    state = load_checkpoint(path, map_location="cpu")  # a model.pt or a trainer checkpoint
    weights = state["ema"] if "ema" in state else state.get("model")
    if "config" not in state or weights is None:
        raise ValueError(f"{path} holds no config and weights to start from")
    theirs = model_sections(state["config"]).get("model", {})
    ours = model_sections(config_to_dict(config)).get("model", {})
    differ = [f"{key} {theirs.get(key)!r} != {ours.get(key)!r}" for key in sorted(set(theirs) | set(ours))
              if theirs.get(key) != ours.get(key)]  # fmt: skip
    if differ:
        raise ValueError(f"--init-from {path}: another architecture than the config's [model] ({', '.join(differ)})")
    return weights, int(state.get("step", 0))
