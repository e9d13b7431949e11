"""GPU readiness in one command: bf16 training steps/s, continued training, a torchrun start, sampling/s.

Run on one GPU (the device command is in bench/README.md, "gpu"):  python -m bench gpu
The same code on CPU in seconds (tests/benchmarks/test_bench_gpu.py): python -m bench gpu --dry-run

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

The sections live in ``bench/_gpu_checks.py`` (1, 2), ``_gpu_training.py`` (3, 5, 7),
``_gpu_torchrun.py`` (4) and ``_gpu_sampling.py`` (6); the plans (sizes) in ``_gpu_plan.py``, the
tools they share in ``_gpu_common.py`` and the markdown summary in ``_gpu_report.py``. This module
runs them in order and writes the results.

``--dry-run`` runs every section on the CPU with tiny sizes: networks shrunk to width 16 and one
block (the continued training and sampling keep the shipped weights), batches of 2-4, 2-4 steps,
gloo instead of NCCL, CPU bf16 autocast in ``bf16_loss`` and ``sampling``. The trainer's own bf16
autocast and ``torch.compile`` apply on CUDA only, so the dry run trains those cases in fp32 and
eager; those, NCCL and the CUDA timers/memory counters are the only code it does not run.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench._gpu_checks import bf16_loss, environment
from bench._gpu_plan import COMPILED_CASE, DRY_PLAN, GPU_PLAN, TRAIN_CASES, quick_plan
from bench._gpu_report import summary
from bench._gpu_sampling import sampling
from bench._gpu_torchrun import torchrun
from bench._gpu_training import continued_training, train_throughput

# torch and ase_unimat are imported inside the functions: `python -m bench --list` imports this module.


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
