"""The training loop: CPU or CUDA (bf16), one process or many under ``torchrun`` (DDP), exact resume.

``train(config, out_dir=...)`` builds the model with ``ase_unimat.model.diffusion.build_model``, reads the
HDF5 datasets named in ``config.train`` and runs AdamW with linear warm-up and cosine decay,
gradient clipping and EMA weights. Every ``val_every`` steps it evaluates the EMA model on the
validation file (fixed seed); every ``checkpoint_every`` steps rank 0 writes an atomic checkpoint
(see :mod:`ase_unimat.model.checkpoint`). At the end it writes ``model.pt`` (EMA weights + config).

Exact resume: the data order is a seeded permutation per epoch (resumed from epoch + position),
augmentation is seeded per ``(seed, epoch, index)``, the diffusion noise of step ``s`` on rank ``r``
comes from a generator seeded by ``(seed, s, r)``, and the checkpoint holds the optimiser,
scheduler, EMA and every global RNG state of every rank. A CPU run stopped after ``k`` steps and
resumed ends with bit-identical weights to an uninterrupted one.

Warm start (``train.init_from``, ``unimat-train --init-from``): a fresh run starts model and EMA
from the EMA weights of an exported ``model.pt`` (or a checkpoint) of the same ``[model]``
architecture, with a fresh optimiser and LR schedule; the file and its step are logged (a step-0
record of ``log.jsonl``) and kept in every checkpoint (``init_from``). A run that resumes its own
checkpoint does not apply it again. So a long run can continue across sessions from a committed
``model.pt`` alone (the optimiser moments start over).

Output folder: ``checkpoint_last.pt``, ``checkpoint_<step>.pt`` (every ``keep_every`` steps),
``log.jsonl`` (one JSON object per log/validation event), ``model.pt``.

The data order lives in :mod:`~ase_unimat.training.data_order`, the process set-up in
:mod:`~ase_unimat.training.distributed`, the options in :mod:`~ase_unimat.training.options`. What
remains (~500 lines) is one idea, the loop: ``train`` and its ``_Run`` (set-up, resume, step,
validation, checkpoint, export), kept together so that the exact-resume contract reads in one place.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
import warnings
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader, Dataset
from tqdm.auto import tqdm

from ase_unimat.core.atomic import atomic_write_text
from ase_unimat.model.checkpoint import (
    CHECKPOINT_FORMAT,
    FORMAT_VERSION,
    LAST_NAME,
    atomic_save,
    capture_rng_state,
    config_to_dict,
    export_model,
    latest_checkpoint,
    load_checkpoint,
    remove_stale_tmp,
    restore_rng_state,
    step_name,
)
from ase_unimat.model.config import TrainConfig
from ase_unimat.training.data_order import EpochBatchSampler, EpochKeyedDataset, collate
from ase_unimat.training.distributed import LossForward, Processes, or_reduce_flags, start_processes
from ase_unimat.training.ema import EMA

LOG_NAME = "log.jsonl"


# -- learning rate ----------------------------------------------------------------------------------


def warmup_cosine(step: int, *, warmup_steps: int, max_steps: int, min_ratio: float) -> float:
    """LR multiplier: linear warm-up from ~0 to 1 over ``warmup_steps``, then cosine to ``min_ratio``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, max_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def default_dataset(path: str, *, in_memory: bool) -> Dataset:
    """``ase_unimat.training.dataset.UniMatDataset`` over ``path`` without its own augmentation (the trainer's is seeded).

    Carries the ``spacegroup`` property where the file has it (the condition of a
    ``spacegroup_condition`` network; a network without one ignores it).
    """
    from ase_unimat.training.dataset import UniMatDataset

    with h5py.File(path, "r") as h5:
        properties = ("spacegroup",) if "spacegroup" in h5.get("properties", {}) else ()
    return UniMatDataset(path, in_memory=in_memory, properties=properties)


# -- noise seeds -------------------------------------------------------------------------------------


TRAIN_STREAM, VAL_STREAM = 0, 1


def step_seed(seed: int, step: int, rank: int, *, stream: int = TRAIN_STREAM) -> int:
    """Seed of the diffusion noise of ``step`` on ``rank`` (a 63-bit integer from a SeedSequence).

    ``stream`` separates training noise (0) from the fixed validation noise (1, step 0).
    """
    high, low = np.random.SeedSequence([seed, stream, step, rank]).generate_state(2)
    return (int(high) << 31) ^ int(low)


def _to_device(batch: Mapping, device: torch.device) -> dict:
    return {
        key: value.to(device, non_blocking=True) if isinstance(value, torch.Tensor) else value
        for key, value in batch.items()
    }


# -- the loop ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What a finished :func:`train` call produced."""

    step: int
    epoch: int
    out_dir: Path
    checkpoint: Path
    model: Path | None
    loss: float | None  # the last step's loss; None when this call trained no step
    val_loss: float | None
    wall_time: float


def train(
    config: Any,
    *,
    out_dir: str | os.PathLike,
    resume: bool = True,
    total_steps: int | None = None,
    stop_at: int | None = None,
    device: str | None = None,
    progress: bool = True,
    overrides: Mapping[str, Any] | None = None,
    build_model: Callable[[Any], nn.Module] | None = None,
    make_dataset: Callable[..., Dataset] | None = None,
) -> TrainResult:
    """Train (or continue training) a UniMat model.

    Parameters
    ----------
    config
        The ``UniMatConfig``; ``config.train`` (:class:`~ase_unimat.model.config.TrainConfig`) holds the
        run's settings, and the checkpoints store it with the overrides below applied.
    out_dir
        Folder for checkpoints, ``log.jsonl`` and ``model.pt``.
    resume
        Continue from the newest checkpoint in ``out_dir`` when there is one.
    total_steps
        Overrides ``config.train.total_steps`` (the length of the run and of the LR schedule).
    stop_at
        Stop (with a checkpoint) once this step is reached, leaving the schedule as for
        ``total_steps``; a later call resumes. ``model.pt`` is exported only at ``total_steps``.
    device
        Overrides ``config.train.device``: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
    progress
        Show a tqdm bar on rank 0.
    overrides
        ``TrainConfig`` fields to use instead of ``config.train``'s (e.g. ``keep_every``); unknown
        names raise ``ConfigError``.
    build_model, make_dataset
        Defaults ``ase_unimat.model.diffusion.build_model`` and :func:`default_dataset` (``make_dataset(path,
        in_memory=bool)``); pass others to train a different model or read other data.

    Returns
    -------
    TrainResult
    """
    explicit = {"total_steps": total_steps, "device": device}
    options = config.train.with_overrides(
        **{**dict(overrides or {}), **{key: value for key, value in explicit.items() if value is not None}}
    )
    config = dataclasses.replace(config, train=options)  # what the checkpoints store
    if build_model is None:
        from ase_unimat.model.diffusion import build_model  # torch takes seconds to import
    make_dataset = make_dataset or default_dataset
    out_dir = Path(out_dir)
    threads_before = torch.get_num_threads()
    procs = start_processes(options.device)
    try:
        _set_threads(options, procs)
        return _Run(config, options, procs, out_dir, build_model, make_dataset).run(
            resume=resume, progress=progress, stop_at=stop_at
        )
    finally:
        torch.set_num_threads(threads_before)
        if procs.started_group:
            torch.distributed.destroy_process_group()


def _set_threads(options: TrainConfig, procs: Processes) -> None:
    if options.num_threads:
        torch.set_num_threads(options.num_threads)
    elif procs.device.type == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // procs.local_world_size))


class _Run:
    """State of one training run; :meth:`run` reads top to bottom."""

    def __init__(self, config, options: TrainConfig, procs: Processes, out_dir: Path, build_model, make_dataset):
        self.config, self.options, self.procs, self.out_dir = config, options, procs, out_dir
        self.device = procs.device
        self.cuda = self.device.type == "cuda"
        self.train_loader, self.sampler, train_set = self._train_loader(make_dataset)
        self.val_loader = self._val_loader(make_dataset)
        torch.manual_seed(options.seed)  # identical initial weights on every rank
        self.model = build_model(config)
        _check_slots(self.model, train_set)
        self.compositions = dataset_compositions(train_set) if hasattr(self.model, "set_composition_prior") else None
        if self.compositions is not None:  # the empirical prior for unconditional sampling
            self.model.set_composition_prior(self.compositions)
        self.model.to(self.device)
        self.ema = EMA(self.model, decay=options.ema_decay)
        self.optimizer = torch.optim.AdamW(
            _param_groups(self.model, options.weight_decay), lr=options.lr, betas=tuple(options.betas)
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda step: warmup_cosine(
                step, warmup_steps=options.warmup_steps, max_steps=options.total_steps, min_ratio=options.min_lr_ratio
            ),
        )
        loss_module: nn.Module = LossForward(self.model)
        if procs.distributed:
            with warnings.catch_warnings():
                # torch 2.13 deprecates broadcast_buffers for forward_sync_buffers, but the latter still
                # broadcasts buffers at init, which gloo cannot do for bool buffers (seen_elements).
                # Flag buffers are OR-reduced at checkpoints instead (or_reduce_flags).
                warnings.filterwarnings("ignore", message=".*broadcast_buffers.*", category=FutureWarning)
                loss_module = nn.parallel.DistributedDataParallel(
                    loss_module,
                    device_ids=[self.device.index] if self.cuda else None,
                    find_unused_parameters=options.find_unused_parameters,
                    broadcast_buffers=False,
                )
        if options.compile and self.cuda:
            loss_module = torch.compile(loss_module)
        self.loss_module = loss_module
        self.autocast = torch.autocast("cuda", dtype=torch.bfloat16) if self.cuda and options.bf16 else nullcontext()
        self.step = self.epoch = self.position = 0
        self.wall_offset = 0.0
        self.last_val: float | None = None
        self.init_record: dict | None = None  # {"path", "step"} of the warm start, kept across resumes

    # -- data

    def _loader_kwargs(self) -> dict:
        workers = self.options.num_workers
        if workers < 0:
            workers = min(4, (os.cpu_count() or 1) // self.procs.local_world_size) if self.cuda else 0
        return {
            "num_workers": workers,
            "pin_memory": self.cuda,
            "persistent_workers": workers > 0,
            "collate_fn": collate,
            # a private generator: creating an iterator must not draw from the global torch RNG
            "generator": torch.Generator().manual_seed(self.options.seed),
        }

    def _train_loader(self, make_dataset) -> tuple[DataLoader, EpochBatchSampler, Dataset]:
        parts = [make_dataset(path, in_memory=self.options.in_memory) for path in self.options.train_files]
        base = parts[0] if len(parts) == 1 else ConcatDataset(parts)
        sampler = EpochBatchSampler(
            len(base),
            batch_size=self.options.batch_size,
            seed=self.options.seed,
            rank=self.procs.rank,
            world_size=self.procs.world_size,
        )
        keyed = EpochKeyedDataset(base, seed=self.options.seed, augment=self.options.permute_slots)
        return DataLoader(keyed, batch_sampler=sampler, **self._loader_kwargs()), sampler, base

    def _val_loader(self, make_dataset) -> DataLoader | None:
        if not self.options.val_data or not self.options.val_every:
            return None
        base = make_dataset(self.options.val_data, in_memory=self.options.in_memory)
        keys = [(0, index) for index in range(self.procs.rank, len(base), self.procs.world_size)]
        if self.options.val_batches:
            keys = keys[: self.options.val_batches * self.options.batch_size]
        keyed = EpochKeyedDataset(base, seed=self.options.seed, augment=False)
        return DataLoader(keyed, sampler=keys, batch_size=self.options.batch_size, **self._loader_kwargs())

    # -- checkpoints

    def _checkpoint_state(self) -> dict:
        if self.procs.distributed:
            or_reduce_flags(self.model)
            or_reduce_flags(self.ema.module)
        rng = capture_rng_state()
        rng_per_rank = [rng]
        if self.procs.distributed:
            rng_per_rank = [None] * self.procs.world_size
            torch.distributed.all_gather_object(rng_per_rank, rng)
        return {
            "format": CHECKPOINT_FORMAT,
            "version": FORMAT_VERSION,
            "config": config_to_dict(self.config),
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng_per_rank,
            "step": self.step,
            "epoch": self.epoch,
            "epoch_position": self.position,
            "world_size": self.procs.world_size,
            "wall_time": self._wall(),
            "init_from": self.init_record,
        }

    def save(self) -> Path:
        """Write ``checkpoint_last.pt`` (and the kept ``checkpoint_<step>.pt``) on rank 0; all ranks wait."""
        state = self._checkpoint_state()  # collective: every rank takes part
        last = self.out_dir / LAST_NAME
        if self.procs.is_main:
            atomic_save(state, last)
            keep = self.options.keep_every
            if keep and self.step % keep == 0:
                atomic_save(state, self.out_dir / step_name(self.step))
        self.procs.barrier()
        return last

    def load(self, path: Path) -> None:
        """Continue from checkpoint ``path``: weights, EMA, optimiser, scheduler, RNGs, data position."""
        state = load_checkpoint(path, map_location="cpu")
        if model_sections(state["config"]) != model_sections(config_to_dict(self.config)):
            raise ValueError(f"{path} was trained with a different model config; use another out dir or no resume")
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        rng_states = state["rng"]
        restore_rng_state(rng_states[self.procs.rank % len(rng_states)])
        self.step, self.epoch, self.position = int(state["step"]), int(state["epoch"]), int(state["epoch_position"])
        if self.position % self.sampler.global_batch:  # another world size or batch: restart the epoch
            self.position = 0
        self.wall_offset = float(state.get("wall_time", 0.0))
        self.init_record = state.get("init_from")

    def init_weights(self, path: Path) -> None:
        """Start model and EMA from the (EMA) weights of an exported ``model.pt`` or checkpoint at ``path``.

        The optimiser and LR schedule stay fresh (step 0). The composition prior is this run's
        training data; the seen elements are the file's and this data's. ``ValueError`` (one line)
        when the file's ``[model]`` section differs from this config's.
        """
        state = load_checkpoint(path, map_location="cpu")  # a model.pt or a trainer checkpoint
        weights = state["ema"] if "ema" in state else state.get("model")
        if "config" not in state or weights is None:
            raise ValueError(f"{path} holds no config and weights to start from")
        theirs = model_sections(state["config"]).get("model", {})
        ours = model_sections(config_to_dict(self.config)).get("model", {})
        differ = [f"{key} {theirs.get(key)!r} != {ours.get(key)!r}" for key in sorted(set(theirs) | set(ours))
                  if theirs.get(key) != ours.get(key)]  # fmt: skip
        if differ:
            raise ValueError(f"--init-from {path}: another architecture than the config's [model] ({', '.join(differ)})")
        self.model.load_state_dict(weights)
        if self.compositions is not None:
            self.model.set_composition_prior(self.compositions)
        self.ema.load_state_dict(self.model.state_dict())
        self.init_record = {"path": str(path), "step": int(state.get("step", 0))}
        self.log({"step": 0, "init_from": self.init_record["path"], "init_step": self.init_record["step"],
                  "wall_time": self._wall()})  # fmt: skip

    # -- logging

    def _wall(self) -> float:
        return self.wall_offset + time.perf_counter() - self.started

    def log(self, record: dict) -> None:
        if self.procs.is_main:
            with open(self.out_dir / LOG_NAME, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")

    def _trim_log(self) -> None:
        """Drop log lines past the resumed step (written by a run killed after its last checkpoint)."""
        path = self.out_dir / LOG_NAME
        if not (self.procs.is_main and path.is_file()):
            return
        kept = [line for line in path.read_text(encoding="utf-8").splitlines() if _log_step(line) <= self.step]
        atomic_write_text(path, "".join(line + "\n" for line in kept))

    def _reduce_mean(self, sums: dict[str, float], count: int) -> dict[str, float]:
        """Average per-step values over steps and ranks."""
        keys = sorted(sums)
        values = torch.tensor([sums[k] for k in keys] + [float(count)], dtype=torch.float64)
        if self.procs.distributed:
            values = values.to(self.device)
            torch.distributed.all_reduce(values)
            values = values.cpu()
        return {k: float(v) / float(values[-1]) for k, v in zip(keys, values[:-1].tolist(), strict=True)}

    # -- validation

    @torch.no_grad()
    def validate(self) -> float:
        """Mean loss of the EMA model over the validation file, with a fixed noise seed."""
        generator = torch.Generator(device=self.device).manual_seed(
            step_seed(self.options.seed, 0, self.procs.rank, stream=VAL_STREAM)
        )
        total = torch.zeros(2, dtype=torch.float64)
        for batch in self.val_loader:
            batch = _to_device(batch, self.device)
            with self.autocast:
                loss, _ = self.ema.module.loss(batch, generator=generator)
            n = len(batch["natoms"]) if "natoms" in batch else len(batch["coords"])
            total += torch.tensor([float(loss) * n, n], dtype=torch.float64)
        if self.procs.distributed:
            total = total.to(self.device)
            torch.distributed.all_reduce(total)
            total = total.cpu()
        return float(total[0] / total[1])

    # -- training

    def run(self, *, resume: bool, progress: bool, stop_at: int | None) -> TrainResult:
        self.started = time.perf_counter()
        if self.procs.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            remove_stale_tmp(self.out_dir)
        self.procs.barrier()
        previous = latest_checkpoint(self.out_dir) if resume else None
        if previous is not None:
            self.load(previous)
            self._trim_log()
        else:
            if self.procs.is_main:
                (self.out_dir / LOG_NAME).unlink(missing_ok=True)
            if self.options.init_from:  # a fresh run only: a resumed one has its own weights
                self.init_weights(Path(self.options.init_from))
        options = self.options
        end = options.total_steps if stop_at is None else min(stop_at, options.total_steps)
        generator = torch.Generator(device=self.device)
        bar = _progress_bar(options.total_steps, self.step, enabled=progress and self.procs.is_main)
        sums: dict[str, float] = {}
        count, tick, loss_value = 0, time.perf_counter(), None
        self.model.train()
        while self.step < end:
            self.sampler.set_epoch(self.epoch, position=self.position)
            for batch in self.train_loader:
                batch = _to_device(batch, self.device)
                generator.manual_seed(step_seed(options.seed, self.step, self.procs.rank))
                with self.autocast:
                    loss, terms = self.loss_module(batch, generator)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"non-finite loss {float(loss)} at step {self.step}; stopping")
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                clip = options.grad_clip if options.grad_clip > 0 else math.inf
                grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip))
                self.optimizer.step()
                self.scheduler.step()
                self.ema.update(self.model)
                self.step += 1
                self.position += self.sampler.global_batch
                if self.position >= self.sampler.batches_per_epoch * self.sampler.global_batch:
                    self.epoch, self.position = self.epoch + 1, 0
                loss_value = float(loss.detach())
                for key, value in {"loss": loss_value, **terms, "grad_norm": grad_norm}.items():
                    sums[key] = sums.get(key, 0.0) + float(value)
                count += 1
                bar.update(1)
                done = self.step >= end
                if self.step % options.log_every == 0 or done:
                    means = self._reduce_mean(sums, count)
                    now = time.perf_counter()
                    record = {
                        "step": self.step,
                        "epoch": self.epoch,
                        "lr": self.scheduler.get_last_lr()[0],
                        **means,
                        "samples_per_s": count * self.sampler.global_batch / max(now - tick, 1e-9),
                        "wall_time": self._wall(),
                    }
                    self.log(record)
                    bar.set_postfix(loss=f"{means['loss']:.4f}", refresh=False)
                    sums, count, tick = {}, 0, now
                paused = time.perf_counter()  # validation and saving do not count in samples/s
                finished = self.step >= options.total_steps
                if self.val_loader is not None and (self.step % options.val_every == 0 or finished):
                    self.last_val = self.validate()
                    self.log(
                        {"step": self.step, "epoch": self.epoch, "val_loss": self.last_val, "wall_time": self._wall()}
                    )
                if self.step % options.checkpoint_every == 0 or done:
                    self.save()
                tick += time.perf_counter() - paused
                if done:
                    break
        bar.close()
        last = self.out_dir / LAST_NAME
        if not last.is_file() and self.procs.is_main:
            raise RuntimeError(f"no checkpoint in {self.out_dir}: nothing was trained")
        finished = self.step >= options.total_steps
        model_path = export_model(last, self.out_dir) if finished and self.procs.is_main else None
        self.procs.barrier()
        return TrainResult(
            step=self.step,
            epoch=self.epoch,
            out_dir=self.out_dir,
            checkpoint=last,
            model=model_path,
            loss=loss_value,
            val_loss=self.last_val,
            wall_time=self._wall(),
        )


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


def dataset_compositions(dataset: Dataset) -> torch.Tensor:
    """(N, 9, 18) atom counts of every item of ``dataset`` (read from the HDF5 file when it has one)."""
    if isinstance(dataset, ConcatDataset):
        return torch.cat([dataset_compositions(part) for part in dataset.datasets])
    path = getattr(dataset, "path", None)
    if path is not None and str(path).endswith((".h5", ".hdf5")):
        with h5py.File(path, "r") as h5:
            if "composition" in h5:
                return torch.from_numpy(h5["composition"][: len(dataset)].astype(np.int64))
    return torch.stack([torch.as_tensor(dataset[i]["composition"]) for i in range(len(dataset))])


def _check_slots(model: nn.Module, dataset: Dataset) -> None:
    """Raise ``ValueError`` when the data's L differs from the model's ``n_slots``."""
    parts = dataset.datasets if isinstance(dataset, ConcatDataset) else [dataset]
    want = getattr(model, "n_slots", None)
    for part in parts:
        have = getattr(part, "n_slots", None)
        if want is not None and have is not None and int(have) != int(want):
            raise ValueError(f"{getattr(part, 'path', 'the data')} has L = {have} slots but the model has {want}")


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: decay on matrices and kernels (ndim >= 2), none on biases, norms and embeddings' 1-D params."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _log_step(line: str) -> int:
    try:
        return int(json.loads(line).get("step", 0))
    except (ValueError, AttributeError):
        return 0


def _progress_bar(total: int, initial: int, *, enabled: bool):
    return tqdm(total=total, initial=initial, disable=not enabled, desc="train", unit="step", dynamic_ncols=True)
