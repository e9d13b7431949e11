"""The GPU benchmark's ``torchrun`` section: the trainer under ``torchrun --standalone --nproc_per_node 1``.

It owns :func:`torchrun`, which starts the installed trainer (``-m ase_unimat.cli.train``) under
the launcher for a few steps, warm-started from the shipped export (``--init-from``): NCCL on a
GPU (its version line is looked for in the output), gloo on the CPU. The trainer joins the process
group under torchrun even with one process, so this is the DDP code path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench._gpu_common import log_records
from bench._gpu_plan import DATA, REPO, SHIPPED, Plan

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
