"""GPU readiness in one command: bf16 training steps/s, continued training, a torchrun start, sampling/s.

Run on one GPU (the device command is in bench/README.md, "gpu"):  python -m bench gpu
The same code on CPU in seconds (tests/test_bench_gpu.py):         python -m bench gpu --dry-run

Sections, in this order (each one's failure is recorded and the next one still runs; after each
section the results so far are written to ``<stem>_partial.json``, so a run cut short by a time
limit still reports what it measured):

1. ``environment``: torch, CUDA, the GPU, bf16 and NCCL support.
2. ``bf16_loss``: one batch through the shipped model in fp32 and under bf16 autocast (same noise):
   both losses, their relative difference, finite gradients.
3. ``continued_training``: the shipped trainer state (``models/unimat-mp20/training_state.ckpt``,
   step 20,000) trained on for N steps in two calls of the trainer (stop with a checkpoint, resume),
   bf16 and EMA, validation on a few batches; the exported ``model.pt`` is read back with
   ``torch.load(weights_only=True)``, loaded strictly into a fresh model, compared with the EMA of
   the last checkpoint and sampled from.
4. ``torchrun``: ``torchrun --standalone --nproc_per_node 1 -m ase_unimat.cli.train models/unimat-mp20/config.toml
   --init-from models/unimat-mp20/model.pt ...`` for a few steps (a warm start from the shipped
   export): NCCL on a GPU (its version line is looked for in the output), gloo on CPU; the trainer
   joins the process group under torchrun even with one process, so this is the DDP code path.
5. ``training``: trainer steps/s (``ase_unimat.training.trainer.train``: data loading, forward, backward,
   clipping, AdamW, EMA) of the shipped configuration (``models/unimat-mp20``), of
   ``models/unimat-mp-wide`` (space-group condition) and of the dense paper network at its GPU
   config (``models/configs/gpu.toml``, eager), at the config's batch and a 4x batch, bf16 (and the
   shipped configuration in fp32 for comparison); the first log window (warm-up, autotuning) is not
   timed. Training data is the shipped ``models/unimat-mp20/reference.h5`` (6,045 structures).
6. ``sampling``: structures/s of the shipped model with both samplers at large batches (default
   ``ancestral``, 50 steps; ``ddim``, 20 steps), the sampler alone and with decoding to Atoms, the
   network calls alone (the ceiling if drawing the per-sample noise cost nothing), and one bf16
   autocast case (not what ``generate()`` does). The issue's target is >= 2,000 structures/s.
7. ``training_compiled``: the dense network with ``torch.compile``, as gpu.toml ships it (last,
   since compiling may take minutes).

``--dry-run`` runs every section on the CPU with tiny sizes: networks shrunk to width 16 and one
block (the continued training and sampling keep the shipped weights), batches of 2-4, 2-4 steps,
gloo instead of NCCL, CPU bf16 autocast in ``bf16_loss`` and ``sampling``. The trainer's own bf16
autocast and ``torch.compile`` apply on CUDA only, so the dry run trains those cases in fp32 and
eager; those, NCCL and the CUDA timers/memory counters are the only code it does not run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

# torch and ase_unimat are imported inside the functions: `python -m bench --list` imports this module.
REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "models" / "unimat-mp20"
DATA = SHIPPED / "reference.h5"
STATE = SHIPPED / "training_state.ckpt"
SAMPLING_TARGET = 2000  # structures/s on an H100-class GPU (issue 14)


@dataclasses.dataclass(frozen=True)
class TrainCase:
    """One training-throughput case: a shipped config, its precision and the batch sizes tried."""

    name: str
    config: str  # relative to the repository root
    bf16: bool = True
    compile: bool = False
    batch_factors: tuple[int, ...] = (1, 4)  # multiples of the config's batch size


TRAIN_CASES = (
    TrainCase("unimat-mp20", "models/unimat-mp20/config.toml"),
    TrainCase("unimat-mp20 fp32", "models/unimat-mp20/config.toml", bf16=False, batch_factors=(1,)),
    TrainCase("unimat-mp-wide", "models/unimat-mp-wide/config.toml"),
    TrainCase("gpu-dense eager", "models/configs/gpu.toml", batch_factors=(1,)),
)
COMPILED_CASE = TrainCase("gpu-dense compiled", "models/configs/gpu.toml", compile=True, batch_factors=(1,))


@dataclasses.dataclass(frozen=True)
class Plan:
    """The sizes of one run: the GPU run's, or the dry run's (tiny, on the CPU)."""

    dry_run: bool
    device: str
    train_steps: int  # per throughput case
    log_every: int  # steps per timed window; the first window is warm-up
    fixed_batch: int | None  # batch size of every training case (dry run), else the config's x factors
    continue_steps: int  # continued training, in two halves
    continue_batch: int
    torchrun_steps: int
    torchrun_config: str
    torchrun_batch: int | None
    loss_batch: int
    sample_batches: tuple[int, ...]
    sample_cases: tuple[tuple[str, int], ...]  # (sampler, steps)
    network_calls: int  # timed network calls per batch in the network-only measurement
    time_budget_s: float  # sections that would start later are skipped
    threads: int  # torch CPU threads (0: the trainer's default); 1 in the dry run, as CPUs are shared

    @property
    def train_overrides(self) -> dict[str, Any]:
        """Trainer options beyond ``[train]`` that every training call of this plan passes."""
        return {"num_threads": self.threads} if self.threads else {}


GPU_PLAN = Plan(
    dry_run=False, device="cuda", train_steps=60, log_every=20, fixed_batch=None, continue_steps=200,
    continue_batch=64, torchrun_steps=20, torchrun_config="models/unimat-mp20/config.toml", torchrun_batch=None,
    loss_batch=64, sample_batches=(1024, 4096, 16384), sample_cases=(("ancestral", 50), ("ddim", 20)),
    network_calls=10, time_budget_s=480.0, threads=0,
)  # fmt: skip
DRY_PLAN = Plan(
    dry_run=True, device="cpu", train_steps=4, log_every=2, fixed_batch=2, continue_steps=4, continue_batch=2,
    torchrun_steps=2, torchrun_config="models/unimat-mp20/config.toml", torchrun_batch=2, loss_batch=4,
    sample_batches=(4,), sample_cases=(("ancestral", 2), ("ddim", 2)), network_calls=2, time_budget_s=120.0,
    threads=1,
)  # fmt: skip


def quick_plan(plan: Plan) -> Plan:
    """The ``--quick`` variant of the GPU plan: fewer steps and one sampling batch size."""
    return dataclasses.replace(plan, train_steps=40, continue_steps=100, sample_batches=(4096,), time_budget_s=300.0)


# -- helpers ----------------------------------------------------------------------------------------


def sync(device: Any) -> None:
    """Wait for the device's queued work (a no-op on the CPU), so host clocks time it."""
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def autocast(device: Any, enabled: bool = True):
    """bf16 autocast on ``device`` (CUDA or CPU), or a no-op context."""
    import torch

    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16) if enabled else nullcontext()


def shrunk(model: dict[str, Any]) -> dict[str, Any]:
    """A ``[model]`` section at dry-run size: width 16, one block; network kind and flags kept."""
    return {**model, "width": 16, "pair_width": 16, "heads": 2, "depth": 1, "time_dim": 16, "n_rbf": 4, "fourier_k": 2}


def training_config(path: str | Path, *, plan: Plan, shrink: bool, **train: Any):
    """The TOML config at ``path`` with ``[train]`` pointed at the shipped data and set from ``train``."""
    from ase_unimat.model.config import from_dict, load_config, to_dict

    data = to_dict(load_config(REPO / path))
    if shrink:
        data["model"] = shrunk(data["model"])
    data["train"].update({"train_data": str(DATA), "val_data": "", "device": plan.device, **train})
    if plan.dry_run:
        data["train"]["num_workers"] = 0
    return from_dict(data)


def log_records(out_dir: Path) -> list[dict]:
    """The records of a training run's ``log.jsonl``."""
    return [json.loads(line) for line in (out_dir / "log.jsonl").read_text().splitlines() if line.strip()]


def attempt(labels: dict[str, Any], measure: Callable[[], dict]) -> dict:
    """``measure()``, or ``labels`` with the error where it fails (e.g. out of memory at the largest batch)."""
    try:
        return measure()
    except Exception as error:  # noqa: BLE001 - one failed case must not lose the section's other rows
        return {**labels, "error": f"{type(error).__name__}: {error}"}


def reset_peak_memory(device: str) -> None:
    """Free what earlier cases left cached and restart the peak-memory counter (CUDA only)."""
    import gc

    import torch

    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_memory_gib(device: str) -> float | None:
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if device == "cuda" else None


def reference_batch(size: int, device: Any) -> dict:
    """The first ``size`` structures of the shipped reference data as a training batch on ``device``."""
    import torch

    from ase_unimat.training.data_order import collate
    from ase_unimat.training.trainer import _to_device, default_dataset

    dataset = default_dataset(str(DATA), in_memory=False)
    return _to_device(collate([dataset[i] for i in range(size)]), torch.device(device))


def compositions(count: int):
    """(count, 9, 18) compositions of the shipped reference data, cycled."""
    import h5py
    import numpy as np
    import torch

    with h5py.File(DATA, "r") as h5:
        grids = h5["composition"][:]
    return torch.from_numpy(grids[np.arange(count) % len(grids)].astype(np.float32))


# -- sections ---------------------------------------------------------------------------------------


def environment(plan: Plan) -> dict:
    """Versions and capabilities: torch, CUDA, the GPU, bf16, NCCL."""
    import torch

    info: dict[str, Any] = {
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "cuda_available": torch.cuda.is_available(),
        "gloo_available": torch.distributed.is_available() and torch.distributed.is_gloo_available(),
        "nccl_available": torch.distributed.is_available() and torch.distributed.is_nccl_available(),
        "cpu_count": os.cpu_count(),
    }
    if plan.device == "cuda":
        props = torch.cuda.get_device_properties(0)
        nccl = torch.cuda.nccl.version()  # a tuple (2, 27, 3) in recent torch
        info.update(
            gpu=torch.cuda.get_device_name(0), capability=".".join(map(str, torch.cuda.get_device_capability(0))),
            gpu_memory_gib=round(props.total_memory / 2**30, 1), multiprocessors=props.multi_processor_count,
            cuda_runtime=torch.version.cuda, bf16_supported=torch.cuda.is_bf16_supported(),
            nccl_version=".".join(map(str, nccl)) if isinstance(nccl, tuple) else str(nccl),
        )  # fmt: skip
    return info


def bf16_loss(plan: Plan) -> dict:
    """One batch through the shipped model in fp32 and in bf16 autocast, the same diffusion noise."""
    import torch

    from ase_unimat.generation import load_model

    model = load_model(SHIPPED / "model.pt", device=plan.device).train()
    batch = reference_batch(plan.loss_batch, plan.device)
    losses, grads_finite = {}, {}
    for name, enabled in (("fp32", False), ("bf16", True)):
        model.zero_grad(set_to_none=True)
        generator = torch.Generator(device=plan.device).manual_seed(0)
        with autocast(plan.device, enabled):
            loss, _ = model.loss(batch, generator=generator)
        loss.backward()
        losses[name] = float(loss.detach())
        grads_finite[name] = all(bool(torch.isfinite(p.grad).all()) for p in model.parameters() if p.grad is not None)
    return {
        "batch": plan.loss_batch,
        "loss_fp32": losses["fp32"],
        "loss_bf16": losses["bf16"],
        "relative_difference": abs(losses["bf16"] - losses["fp32"]) / max(abs(losses["fp32"]), 1e-12),
        "gradients_finite": grads_finite,
    }


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


TRAINER_MODULE = "ase_unimat.cli.train"  # cli/ installs as ase_unimat.cli (pyproject): the package must be installed


def torchrun(plan: Plan, work: Path) -> dict:
    """``torchrun --standalone --nproc_per_node 1`` of the trainer for a few steps; NCCL on a GPU."""
    out = work / "torchrun"
    steps = plan.torchrun_steps
    settings = {
        "train.train_data": json.dumps(str(DATA)), "train.val_data": '""', "train.device": json.dumps(plan.device),
        "train.bf16": "true", "train.checkpoint_every": str(steps), "train.log_every": "1", "train.warmup_steps": "1",
    }  # fmt: skip
    if plan.torchrun_batch is not None:
        settings["train.batch_size"] = str(plan.torchrun_batch)
    if plan.dry_run:
        settings["train.num_workers"] = "0"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1",
        "-m", TRAINER_MODULE, str(REPO / plan.torchrun_config), "--out", str(out), "--no-resume", "--quiet",
        "--max-steps", str(steps), "--init-from", str(SHIPPED / "model.pt"),
        *[arg for key, value in settings.items() for arg in ("--set", f"{key}={value}")],
    ]  # fmt: skip
    # run from the work folder and without the repository on the path: its ase_unimat/ (without cli/)
    # would shadow the installed package, whose ase_unimat.cli the launcher runs
    env = {**os.environ, "NCCL_DEBUG": "VERSION", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    started = time.perf_counter()
    work.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=300 if not plan.dry_run else 120)
    seconds = time.perf_counter() - started
    output = done.stdout + done.stderr
    records = log_records(out) if (out / "log.jsonl").is_file() else []
    shown = ["torchrun" if arg == "torch.distributed.run" else arg for arg in command[2:]]
    result = {
        "command": " ".join(shown).replace(str(REPO) + os.sep, ""),
        "returncode": done.returncode,
        "seconds": round(seconds, 2),
        "backend_expected": "nccl" if plan.device == "cuda" else "gloo",
        "nccl_version_line": next((line.strip() for line in output.splitlines() if "NCCL version" in line), None),
        "steps_logged": [record["step"] for record in records if "loss" in record],
        "init_from_logged": next((record["init_from"] for record in records if "init_from" in record), None),
        "model_exported": (out / "model.pt").is_file(),
        "output_tail": output.strip().splitlines()[-5:],
    }
    if done.returncode != 0:
        raise RuntimeError(f"torchrun exited with {done.returncode}: {' | '.join(result['output_tail'])}")
    return result


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


def time_sampling(model, batch: int, sampler: str, steps: int, plan: Plan, *, bf16: bool = False,
                  decode: bool = False) -> dict:  # fmt: skip
    """Structures/s of one sampler call over ``batch`` compositions (and of decoding them to Atoms)."""
    from ase_unimat.model.sampler import get_sampler, to_atoms

    chunk = compositions(batch).to(plan.device)
    sync(plan.device)
    started = time.perf_counter()
    with autocast(plan.device, bf16):
        coords, lattice = get_sampler(sampler)(model, chunk, seeds=range(batch), steps=steps, device=plan.device)
    sync(plan.device)
    seconds = time.perf_counter() - started
    row = {"sampler": sampler, "steps": steps, "batch": batch, "bf16_autocast": bf16, "seconds": round(seconds, 3),
           "structures_per_s": round(batch / seconds, 1), "peak_memory_gib": peak_memory_gib(plan.device)}  # fmt: skip
    if decode:
        started = time.perf_counter()
        structures = to_atoms(coords.float(), lattice.float())
        decode_s = time.perf_counter() - started
        row.update(decode_s=round(decode_s, 3), structures_per_s_with_decode=round(len(structures) / (seconds + decode_s), 1))
    return row


def network_only(model, batch: int, plan: Plan) -> dict:
    """Structures/s if only the network calls cost time: ``network_calls`` predictions on a batch, scaled."""
    import torch

    comp = compositions(batch).to(plan.device)
    mask = model.occupied_slots(comp)
    coords = torch.rand(*mask.shape, 3, device=plan.device) * mask[..., None]  # zeros in empty slots
    lattice = torch.randn(batch, 6, device=plan.device)
    t = torch.full((batch,), 0.5, device=plan.device)
    with torch.no_grad():
        model.predict(coords, lattice, t, comp)  # warm-up
        sync(plan.device)
        started = time.perf_counter()
        for _ in range(plan.network_calls):
            model.predict(coords, lattice, t, comp)
        sync(plan.device)
    per_call = (time.perf_counter() - started) / plan.network_calls
    calls = 2 * 50  # the default sampler: 50 ancestral steps, one corrector call each
    return {"batch": batch, "seconds_per_call": round(per_call, 5),
            "structures_per_s_at_100_calls": round(batch / (per_call * calls), 1)}  # fmt: skip


def sampling(plan: Plan) -> dict:
    """Structures/s of the shipped model: both samplers at large batches, network alone, bf16 autocast."""
    from ase_unimat.generation import load_model

    model = load_model(SHIPPED / "model.pt", device=plan.device)
    time_sampling(model, min(plan.sample_batches), "ddim", 2, plan)  # warm-up
    largest = max(plan.sample_batches)
    runs = [(name, steps, batch, False) for name, steps in plan.sample_cases for batch in plan.sample_batches]
    runs.append((*plan.sample_cases[0], largest, True))  # the default sampler under bf16 autocast
    cases = []
    for name, steps, batch, bf16 in runs:
        labels = {"sampler": name, "steps": steps, "batch": batch, "bf16_autocast": bf16}
        reset_peak_memory(plan.device)
        cases.append(attempt(labels, lambda n=name, k=steps, b=batch, h=bf16: time_sampling(
            model, b, n, k, plan, bf16=h, decode=b == largest and not h)))  # fmt: skip
    sampler, steps = plan.sample_cases[0]
    default = [row for row in cases if row["sampler"] == sampler and not row["bf16_autocast"] and "error" not in row]
    best_default = max((row["structures_per_s"] for row in default), default=None)
    return {
        "model": str(SHIPPED.relative_to(REPO)),
        "compositions": "models/unimat-mp20/reference.h5, cycled (2-20 atoms)",
        "cases": cases,
        "network_only": [attempt({"batch": batch}, lambda b=batch: network_only(model, b, plan))
                         for batch in plan.sample_batches],  # fmt: skip
        "default_sampler": f"{sampler}, {steps} steps",
        "best_default_structures_per_s": best_default,
        "target_structures_per_s": SAMPLING_TARGET,
        "meets_target": None if plan.dry_run or best_default is None else best_default >= SAMPLING_TARGET,
    }


# -- the run ----------------------------------------------------------------------------------------


def run(*, quick: bool, out_dir: Path, dry_run: bool = False) -> dict:
    """GPU readiness: bf16 training steps/s, continued training, torchrun (NCCL), sampling structures/s."""
    import torch

    from bench import BenchmarkError

    if not dry_run and not torch.cuda.is_available():
        raise BenchmarkError("python -m bench gpu needs a CUDA GPU; on a CPU run it with --dry-run")
    plan = DRY_PLAN if dry_run else (quick_plan(GPU_PLAN) if quick else GPU_PLAN)
    stem = "gpu" + ("_dry_run" if dry_run else "") + ("_quick" if quick else "")
    out_dir = Path(out_dir)
    partial = out_dir / f"{stem}_partial.json"
    result: dict[str, Any] = {
        "command": "python -m bench gpu" + (" --dry-run" if dry_run else "") + (" --quick" if quick else ""),
        "dry_run": dry_run,
        "note": "dry run: CPU, tiny sizes; numbers are not GPU measurements" if dry_run else "one GPU",
        "plan": dataclasses.asdict(plan),
        "sections": {},
        "errors": {},
        "skipped": [],
    }
    threads_before = torch.get_num_threads()
    if plan.threads:
        torch.set_num_threads(plan.threads)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp:
        work = Path(tmp)
        sections: list[tuple[str, Callable[[], Any]]] = [
            ("environment", lambda: environment(plan)),
            ("bf16_loss", lambda: bf16_loss(plan)),
            ("continued_training", lambda: continued_training(plan, work)),
            ("torchrun", lambda: torchrun(plan, work)),
            ("training", lambda: [row for case in TRAIN_CASES for row in train_throughput(case, plan, work)]),
            ("sampling", lambda: sampling(plan)),
            ("training_compiled", lambda: train_throughput(COMPILED_CASE, plan, work)),
        ]
        for name, section in sections:
            elapsed = time.perf_counter() - started
            if elapsed > plan.time_budget_s:
                result["skipped"].append(f"{name}: time budget of {plan.time_budget_s:.0f} s spent ({elapsed:.0f} s)")
                continue
            print(f"[bench gpu] {name} ...", flush=True)
            section_start = time.perf_counter()
            try:
                result["sections"][name] = section()
            except Exception as error:  # noqa: BLE001 - one broken section must not lose the others' numbers
                result["errors"][name] = f"{type(error).__name__}: {error}"
            print(f"[bench gpu] {name}: {time.perf_counter() - section_start:.1f} s"
                  f"{' ERROR ' + result['errors'][name] if name in result['errors'] else ''}", flush=True)  # fmt: skip
            result.setdefault("section_seconds", {})[name] = round(time.perf_counter() - section_start, 2)
            partial.write_text(json.dumps(_json_ready(result), indent=1) + "\n")
            if plan.device == "cuda":
                torch.cuda.empty_cache()
    torch.set_num_threads(threads_before)
    try:
        (out_dir / f"{stem}.md").write_text(summary(result), encoding="utf-8")
    except Exception as error:  # noqa: BLE001 - the JSON must still be written
        result["errors"]["summary"] = f"{type(error).__name__}: {error}"
    partial.unlink(missing_ok=True)
    return result


def _json_ready(value: Any) -> Any:
    from bench import json_safe

    return json_safe(value)


def _number(value: Any, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def summary(result: dict) -> str:
    """A markdown summary of a :func:`run` result (failed rows show their error)."""
    sections = result["sections"]
    lines = [f"# `{result['command']}`", "", f"_{result['note']}_", ""]
    env = sections.get("environment", {})
    lines += [f"torch {env.get('torch')}, GPU {env.get('gpu', 'none')}, NCCL {env.get('nccl_version', 'n/a')}", ""]
    rows = sections.get("training", []) + sections.get("training_compiled", [])
    if rows:
        lines += ["## Training (trainer steps/s)", "",
                  "| case | network | batch | bf16 | compile | steps/s | samples/s | peak GiB |", "|---|---|---|---|---|---|---|---|"]
        for row in rows:
            if "error" in row:
                lines.append(f"| {row['case']} | | {row['batch']} | | | failed: {row['error'][:120]} | | |")
                continue
            lines.append(f"| {row['case']} | {row['network']} | {row['batch']} | {row['bf16']} | {row['compile']} | "
                         f"{row['steps_per_s']} | {row['samples_per_s']} | {row['peak_memory_gib']} |")
        lines.append("")
    if "continued_training" in sections:
        c = sections["continued_training"]
        lines += ["## Continued training from the shipped state", "",
                  f"step {c['start_step']} -> {c['final_step']} (checkpoint at {c['checkpoint_step_after_first_call']}, "
                  f"resumed), batch {c['batch']}, bf16 {c['bf16']}: loss {_number(c['loss_second_call'])}, val loss "
                  f"{_number(c['val_loss'])}; export read with weights_only=True, equals the last EMA: "
                  f"{c['export_equals_last_ema']}, samples decoded: {c['export_samples_decoded']}", ""]
    if "torchrun" in sections:
        t = sections["torchrun"]
        lines += ["## torchrun, 1 process", "", f"`{t['command']}`", "",
                  f"exit {t['returncode']} in {t['seconds']} s, backend {t['backend_expected']}, "
                  f"NCCL line: {t['nccl_version_line']}, steps logged {t['steps_logged']}", ""]
    if "sampling" in sections:
        s = sections["sampling"]
        lines += ["## Sampling (shipped model)", "",
                  "| sampler | steps | batch | bf16 autocast | structures/s | with decoding | peak GiB |", "|---|---|---|---|---|---|---|"]
        for row in s["cases"]:
            speed = row.get("structures_per_s", f"failed: {row.get('error', '')[:120]}")
            lines.append(f"| {row['sampler']} | {row['steps']} | {row['batch']} | {row['bf16_autocast']} | {speed} | "
                         f"{row.get('structures_per_s_with_decode', '')} | {row.get('peak_memory_gib', '')} |")
        network = ", ".join(f"batch {n['batch']}: {n.get('structures_per_s_at_100_calls', 'failed')}/s" for n in s["network_only"])
        lines += ["", f"Default sampler ({s['default_sampler']}): best {s['best_default_structures_per_s']} structures/s; "
                  f"target {s['target_structures_per_s']}: met = {s['meets_target']}. The network calls alone, at the "
                  f"default sampler's 100 calls per structure: {network}", ""]
    for name, error in result["errors"].items():
        lines.append(f"- **{name} failed**: {error}")
    for skipped in result["skipped"]:
        lines.append(f"- skipped {skipped}")
    return "\n".join(lines).rstrip() + "\n"
