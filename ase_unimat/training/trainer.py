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

The data order lives in :mod:`~ase_unimat.training.data_order`, the loaders in
:mod:`~ase_unimat.training.loaders`, AdamW and the LR schedule in :mod:`~ase_unimat.training.optim`,
the noise seeds in :mod:`~ase_unimat.training.noise_seed`, what a checkpoint holds (resume, warm
start) in :mod:`~ase_unimat.training.resume`, the process set-up in
:mod:`~ase_unimat.training.distributed`; the settings are :class:`~ase_unimat.model.config.TrainConfig`.
What remains is one idea, the loop: ``train`` and its ``_Run`` (set-up, resume, step, validation,
checkpoint, export), in the order a run takes them.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
import warnings
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ase_unimat.model.checkpoint import LAST_NAME, export_model, latest_checkpoint, remove_stale_tmp
from ase_unimat.model.config import TrainConfig
from ase_unimat.training.distributed import LossForward, Processes, mean_over_ranks, start_processes
from ase_unimat.training.ema import EMA
from ase_unimat.training.loaders import (
    check_slots,
    dataset_compositions,
    default_dataset,
    to_device,
    train_loader,
    val_loader,
)
from ase_unimat.training.noise_seed import VAL_STREAM, step_seed
from ase_unimat.training.optim import make_optimizer
from ase_unimat.training.resume import restore_checkpoint, training_state, warm_start_weights, write_checkpoint
from ase_unimat.training.run_log import LOG_NAME, append_record, trim_log

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
        Defaults ``ase_unimat.model.diffusion.build_model`` and :func:`~ase_unimat.training.loaders.default_dataset` (``make_dataset(path,
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
    """``num_threads``, else ``OMP_NUM_THREADS``, else the cores divided by this node's CPU processes."""
    from_env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if options.num_threads:
        torch.set_num_threads(options.num_threads)
    elif from_env.isdigit() and int(from_env) > 0:
        torch.set_num_threads(int(from_env))
    elif procs.device.type == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // procs.local_world_size))


class _Run:
    """State of one training run; :meth:`run` reads top to bottom."""

    def __init__(self, config, options: TrainConfig, procs: Processes, out_dir: Path, build_model, make_dataset):
        self.config, self.options, self.procs, self.out_dir = config, options, procs, out_dir
        self.device = procs.device
        self.cuda = self.device.type == "cuda"
        self.train_loader, self.sampler, train_set = train_loader(make_dataset, options, procs)
        self.val_loader = val_loader(make_dataset, options, procs)
        torch.manual_seed(options.seed)  # identical initial weights on every rank
        self.model = build_model(config)
        check_slots(self.model, train_set)
        self.compositions = dataset_compositions(train_set) if hasattr(self.model, "set_composition_prior") else None
        if self.compositions is not None:  # the empirical prior for unconditional sampling
            self.model.set_composition_prior(self.compositions)
        self.model.to(self.device)
        self.ema = EMA(self.model, decay=options.ema_decay)
        self.optimizer, self.scheduler = make_optimizer(self.model, options)
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
        # bf16 autocast on CUDA and on CPUs too (1.15-1.3x per step on the 2-core AVX512-BF16 development machine)
        self.autocast = torch.autocast(self.device.type, dtype=torch.bfloat16) if options.bf16 else nullcontext()
        self.step = self.epoch = self.position = 0
        self.wall_offset = 0.0
        self.last_val: float | None = None
        self.init_record: dict | None = None  # {"path", "step"} of the warm start, kept across resumes

    # -- checkpoints

    def _checkpoint_state(self) -> dict:
        state = training_state(  # collective: every rank takes part
            self.config, model=self.model, ema=self.ema, optimizer=self.optimizer, scheduler=self.scheduler,
            procs=self.procs,
        )
        return {
            **state,
            "step": self.step,
            "epoch": self.epoch,
            "epoch_position": self.position,
            "world_size": self.procs.world_size,
            "wall_time": self._wall(),
            "init_from": self.init_record,
        }

    def save(self) -> Path:
        """Write ``checkpoint_last.pt`` (and the kept ``checkpoint_<step>.pt``) on rank 0; all ranks wait."""
        return write_checkpoint(
            self._checkpoint_state(), self.out_dir, step=self.step, keep_every=self.options.keep_every, procs=self.procs
        )

    def load(self, path: Path) -> None:
        """Continue from checkpoint ``path``: weights, EMA, optimiser, scheduler, RNGs, data position."""
        state = restore_checkpoint(
            path, self.config, model=self.model, ema=self.ema, optimizer=self.optimizer, scheduler=self.scheduler,
            rank=self.procs.rank,
        )
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
        weights, step = warm_start_weights(path, self.config)
        self.model.load_state_dict(weights)
        if self.compositions is not None:
            self.model.set_composition_prior(self.compositions)
        self.ema.load_state_dict(self.model.state_dict())
        self.init_record = {"path": str(path), "step": step}
        self.log({"step": 0, "init_from": self.init_record["path"], "init_step": self.init_record["step"],
                  "wall_time": self._wall()})  # fmt: skip

    # -- logging

    def _wall(self) -> float:
        return self.wall_offset + time.perf_counter() - self.started

    def log(self, record: dict) -> None:
        if self.procs.is_main:
            append_record(self.out_dir, record)

    def _trim_log(self) -> None:
        """Drop log lines past the resumed step (written by a run killed after its last checkpoint)."""
        if self.procs.is_main:
            trim_log(self.out_dir, self.step)

    # -- validation

    @torch.no_grad()
    def validate(self) -> float:
        """Mean loss of the EMA model over the validation file, with a fixed noise seed."""
        generator = torch.Generator(device=self.device).manual_seed(
            step_seed(self.options.seed, 0, self.procs.rank, stream=VAL_STREAM)
        )
        total = torch.zeros(2, dtype=torch.float64)
        for batch in self.val_loader:
            batch = to_device(batch, self.device)
            loss, _ = self.ema.module.loss(batch, generator=generator)  # full precision: comparable across runs
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
                batch = to_device(batch, self.device)
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
                    means = mean_over_ranks(sums, count, self.procs)
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


def _progress_bar(total: int, initial: int, *, enabled: bool):
    return tqdm(total=total, initial=initial, disable=not enabled, desc="train", unit="step", dynamic_ncols=True)
