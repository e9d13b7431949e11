"""The GPU benchmark's training sections: continued training from the shipped state, and trainer steps/s.

It owns :func:`continued_training` (the shipped trainer state trained on in two calls of the
trainer -- stop with a checkpoint, resume -- with bf16, EMA and validation, then the export read
back with ``torch.load(weights_only=True)``, loaded strictly and sampled from) and
:func:`train_throughput` (trainer steps/s of one :class:`~bench._gpu_plan.TrainCase` at each of its
batch sizes, the first log window untimed), which the ``training`` and ``training_compiled``
sections run.
"""

from __future__ import annotations

import shutil
import statistics
import time
from pathlib import Path

from bench._gpu_common import (
    attempt,
    compositions,
    log_records,
    peak_memory_gib,
    reset_peak_memory,
    training_config,
)
from bench._gpu_plan import DATA, REPO, SHIPPED, STATE, Plan, TrainCase

# torch and ase_unimat are imported inside the functions: `python -m bench --list` imports bench.gpu and this module.


def continued_training(plan: Plan, work: Path) -> dict:
    """Train the shipped trainer state on (stop + resume), export, and read the export back."""
    import torch

    from ase_unimat.model.checkpoint import LAST_NAME, load_checkpoint
    from ase_unimat.model.config import from_dict
    from ase_unimat.model.diffusion import build_model
    from ase_unimat.model.sampler import sample_ddim, to_atoms
    from ase_unimat.training.trainer import train

    out = work / "continued"
    out.mkdir(parents=True)
    shutil.copyfile(STATE, out / LAST_NAME)
    start_step = int(load_checkpoint(STATE)["step"])
    half = plan.continue_steps // 2
    config = training_config(
        "models/unimat-mp20/config.toml", plan=plan, shrink=False, val_data=str(DATA), bf16=True,
        batch_size=plan.continue_batch, total_steps=start_step + plan.continue_steps,
        checkpoint_every=half, val_every=half, log_every=max(1, half // 2),
    )  # fmt: skip
    overrides = {"val_batches": 2, **plan.train_overrides}
    started = time.perf_counter()
    first = train(config, out_dir=out, stop_at=start_step + half, progress=False, overrides=overrides)
    first_s = time.perf_counter() - started
    checkpoint_step = int(load_checkpoint(out / LAST_NAME)["step"])
    started = time.perf_counter()
    second = train(config, out_dir=out, progress=False, overrides=overrides)  # resumes from the checkpoint
    second_s = time.perf_counter() - started
    if second.model is None:
        raise RuntimeError("the resumed run exported no model.pt")
    exported = torch.load(second.model, map_location="cpu", weights_only=True)
    last = load_checkpoint(out / LAST_NAME)
    shipped = torch.load(SHIPPED / "model.pt", map_location="cpu", weights_only=True)["model"]
    model = build_model(from_dict(exported["config"]))
    model.load_state_dict(exported["model"])  # strict
    floats = [name for name, value in exported["model"].items() if value.is_floating_point()]
    model.to(plan.device)
    count = 4
    coords, lattice = sample_ddim(model, compositions(count).to(plan.device), seeds=range(count), steps=4,
                                  device=plan.device)  # fmt: skip
    records = log_records(out)
    return {
        "from": str(STATE.relative_to(REPO)),
        "start_step": start_step,
        "steps": plan.continue_steps,
        "batch": plan.continue_batch,
        "bf16": config.train.bf16 and plan.device == "cuda",  # the trainer autocasts on CUDA only
        "checkpoint_step_after_first_call": checkpoint_step,
        "final_step": second.step,
        "first_call_s": round(first_s, 2),
        "second_call_s": round(second_s, 2),
        "loss_first_call": first.loss,
        "loss_second_call": second.loss,
        "val_loss": second.val_loss,
        "log_records": len(records),
        "checkpoint_megabytes": round((out / LAST_NAME).stat().st_size / 2**20, 2),
        "export_format": exported.get("format"),
        "export_step": int(exported["step"]),
        "export_equals_last_ema": all(torch.equal(exported["model"][n], last["ema"][n].cpu()) for n in floats),
        "ema_moved_from_shipped": max(float((exported["model"][n] - shipped[n]).abs().max()) for n in floats),
        "export_weights_finite": all(bool(torch.isfinite(exported["model"][n]).all()) for n in floats),
        "export_samples_decoded": len(to_atoms(coords, lattice)),
    }


def train_throughput(case: TrainCase, plan: Plan, work: Path) -> list[dict]:
    """Trainer steps/s of ``case`` at each of its batch sizes (median over the timed log windows)."""
    from ase_unimat.model.config import load_config

    base_batch = load_config(REPO / case.config).train.batch_size
    batches = (plan.fixed_batch,) if plan.fixed_batch else tuple(base_batch * f for f in case.batch_factors)
    return [attempt({"case": case.name, "batch": batch}, lambda b=batch: _train_case(case, b, plan, work))
            for batch in batches]  # fmt: skip


def _train_case(case: TrainCase, batch: int, plan: Plan, work: Path) -> dict:
    """One training run of ``case`` at ``batch``, timed from its log (its folder is removed after)."""
    from ase_unimat.training.trainer import train

    out = work / f"train-{case.name.replace(' ', '-')}-b{batch}"
    try:
        config = training_config(
            case.config, plan=plan, shrink=plan.dry_run, bf16=case.bf16, compile=case.compile, batch_size=batch,
            total_steps=plan.train_steps, log_every=plan.log_every, checkpoint_every=plan.train_steps, val_every=0,
        )  # fmt: skip
        reset_peak_memory(plan.device)
        started = time.perf_counter()
        train(config, out_dir=out, resume=False, progress=False, overrides=plan.train_overrides)
        wall = time.perf_counter() - started
        records = [record for record in log_records(out) if "samples_per_s" in record]
        timed = records[1:] or records
        samples_per_s = statistics.median(record["samples_per_s"] for record in timed)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return {
        "case": case.name, "config": case.config, "network": config.model.network,
        "bf16": case.bf16 and plan.device == "cuda", "compile": case.compile and plan.device == "cuda",
        "batch": batch, "steps": plan.train_steps, "steps_timed": plan.log_every * len(timed),
        "steps_per_s": round(samples_per_s / batch, 3), "samples_per_s": round(samples_per_s, 1),
        "first_window_s": round(records[0]["wall_time"], 2), "wall_s": round(wall, 2),
        "peak_memory_gib": peak_memory_gib(plan.device), "final_loss": records[-1]["loss"],
    }  # fmt: skip
