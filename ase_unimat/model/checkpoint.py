"""Training checkpoints: atomic writes, RNG state capture, and the shipped ``model.pt`` export.

A checkpoint is a dict of plain Python types and tensors only, so ``torch.load(weights_only=True)``
reads it::

    {"format": "ase-unimat-checkpoint", "version": 1,
     "config": {...},            # the UniMatConfig as a plain dict
     "model": state_dict, "ema": state_dict, "optimizer": state_dict, "scheduler": state_dict,
     "rng": [per rank: {"torch": uint8 tensor, "cuda": [uint8 tensor] or [], "numpy": {...}, "python": [...]}],
     "step": int, "epoch": int, "epoch_position": int, "world_size": int, "wall_time": float}

``epoch_position`` is the index into that epoch's sample permutation where training continues.

Writes are atomic: the bytes go to a unique temporary file in the same folder, are flushed and
fsync'ed, and only then ``os.replace`` puts them under the final name (and the folder is fsync'ed).
A process killed at any moment therefore leaves either the previous complete checkpoint or the
new complete one, plus at worst a stray ``*.tmp`` file that :func:`latest_checkpoint` ignores and
:func:`remove_stale_tmp` deletes.
"""

from __future__ import annotations

import dataclasses
import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ase_unimat.core.atomic import TMP_SUFFIX, atomic_write

CHECKPOINT_FORMAT = "ase-unimat-checkpoint"
MODEL_FORMAT = "ase-unimat-model"
FORMAT_VERSION = 1
LAST_NAME = "checkpoint_last.pt"


class CheckpointError(RuntimeError, ValueError):
    """A checkpoint file that is missing, unreadable, or not an ase-unimat checkpoint."""


def step_name(step: int) -> str:
    """File name of the kept checkpoint of ``step`` (``checkpoint_00001000.pt``)."""
    return f"checkpoint_{step:08d}.pt"


def plain(obj: Any) -> Any:
    """``obj`` as plain Python types (dict/list/str/int/float/bool/None); dataclasses and Paths converted.

    Raises ``TypeError`` for anything else, so a checkpoint never holds an object that
    ``weights_only=True`` loading would refuse.
    """
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [plain(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} in a checkpoint config: {obj!r}")


def config_to_dict(config: Any) -> dict:
    """The config as a plain dict (uses ``config.to_dict()`` when the config class has one)."""
    to_dict = getattr(config, "to_dict", None)
    return plain(to_dict() if callable(to_dict) else config)


# -- RNG states -------------------------------------------------------------------------------------


def capture_rng_state() -> dict:
    """The global RNG states (torch CPU, the current CUDA device, numpy legacy, python) as plain types/tensors."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        # only this process's device: touching every GPU would create a context on each of them
        "cuda": [torch.cuda.get_rng_state()] if torch.cuda.is_available() and torch.cuda.is_initialized() else [],
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": [int(version), list(internal), gauss_next],
    }
    return state


def restore_rng_state(state: Mapping) -> None:
    """Set the global RNG states from :func:`capture_rng_state` output."""
    torch.set_rng_state(state["torch"].cpu())
    cuda_states = state.get("cuda") or []
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state(cuda_states[0].cpu())  # the current device
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            numpy_state["kind"],
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["pos"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


# -- atomic file I/O --------------------------------------------------------------------------------


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to ``path`` atomically (:func:`ase_unimat.core.atomic.atomic_write`)."""
    return atomic_write(path, lambda handle: torch.save(obj, handle))


def remove_stale_tmp(folder: str | os.PathLike) -> list[Path]:
    """Delete temporary files left by an interrupted :func:`atomic_save` in ``folder``; return them."""
    removed = []
    for tmp in Path(folder).glob(f".*{TMP_SUFFIX}"):
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


def _read(path: str | os.PathLike, map_location: str | torch.device) -> tuple[Path, Any]:
    """The one ``torch.load(weights_only=True)`` of a checkpoint or model file; ``CheckpointError`` if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        return path, torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # truncated or foreign file: say which file, keep the cause
        raise CheckpointError(f"cannot read checkpoint {path}: {error}") from error


def load_checkpoint(path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> dict:
    """Read a training checkpoint or exported model; ``CheckpointError`` if it is not one (the trainer's reader)."""
    path, state = _read(path, map_location)
    if not isinstance(state, dict) or state.get("format") not in (CHECKPOINT_FORMAT, MODEL_FORMAT):
        raise CheckpointError(f"{path} is not an ase-unimat checkpoint")
    return state


def load_weights(path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> tuple[dict, dict]:
    """``(config dict, state_dict)`` of a model to sample from: EMA weights when the file has them.

    Accepts what :func:`load_checkpoint` accepts and also an untagged ``{"config", "model" or "ema"}``
    dict (weights saved by hand); anything else raises ``CheckpointError``.
    """
    path, state = _read(path, map_location)
    if not isinstance(state, dict) or "config" not in state or not ({"ema", "model"} & set(state)):
        raise CheckpointError(f"{path} is not an ase-unimat checkpoint (needs 'config' and 'ema' or 'model')")
    return state["config"], state["ema"] if "ema" in state else state["model"]


def latest_checkpoint(folder: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint in ``folder`` (``checkpoint_last.pt`` first), or None if there is none.

    Temporary files from interrupted writes are never returned.
    """
    folder = Path(folder)
    last = folder / LAST_NAME
    if last.is_file():
        return last
    kept = sorted(folder.glob("checkpoint_[0-9]*.pt"))
    return kept[-1] if kept else None


def export_model(checkpoint: str | os.PathLike | Mapping, out_dir: str | os.PathLike) -> Path:
    """Write ``out_dir/model.pt``: the EMA weights and the config of a training checkpoint, nothing else.

    Parameters
    ----------
    checkpoint
        A checkpoint path or an already loaded checkpoint dict.
    out_dir
        Folder for ``model.pt`` (created if needed).

    Returns
    -------
    Path of the written ``model.pt``: ``{"format": "ase-unimat-model", "version": 1, "config": dict,
    "model": EMA state_dict, "step": int}``, loadable with ``torch.load(weights_only=True)``.
    """
    state = checkpoint if isinstance(checkpoint, Mapping) else load_checkpoint(checkpoint)
    missing = [key for key in ("config", "ema", "step") if key not in state]
    if missing:
        raise CheckpointError(f"checkpoint lacks {', '.join(missing)}; cannot export a model")
    model = {
        "format": MODEL_FORMAT,
        "version": FORMAT_VERSION,
        "config": state["config"],
        "model": {name: tensor.detach().cpu().clone() for name, tensor in state["ema"].items()},
        "step": int(state["step"]),
    }
    return atomic_save(model, Path(out_dir) / "model.pt")
