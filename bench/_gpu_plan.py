"""The GPU benchmark's plan: the shipped files it uses, the training cases, and the sizes of a run.

It owns the paths of the shipped model (``models/unimat-mp20``: export, trainer state, reference
data), :class:`TrainCase` and the training-throughput cases (``TRAIN_CASES``, ``COMPILED_CASE``), and
:class:`Plan` with the GPU run's sizes (``GPU_PLAN``), the dry run's tiny CPU sizes (``DRY_PLAN``)
and the ``--quick`` variant (:func:`quick_plan`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "models" / "unimat-mp20"
DATA = SHIPPED / "reference.h5"
STATE = SHIPPED / "training_state.ckpt"


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
