"""Processes and devices: where a training process sits under ``torchrun`` (DDP), and the helpers DDP needs.

``start_processes`` reads torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) and joins
the process group (NCCL on CUDA, gloo on CPU); one process without torchrun is a world of one
outside any group, one process under torchrun joins a group of one (the DDP path of many).
"""

from __future__ import annotations

import dataclasses
import os

import torch
from torch import nn


@dataclasses.dataclass(frozen=True)
class Processes:
    """Where this process sits: rank, world size, local rank (from torchrun's environment), device.

    ``distributed``: a process group is up (several processes, or one launched by torchrun), so the
    model is wrapped in DDP and the collectives run, one process too.
    """

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    device: torch.device
    started_group: bool
    distributed: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.distributed:
            torch.distributed.barrier()


def start_processes(device: str = "auto") -> Processes:
    """Read ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` (set by torchrun) and join the process group.

    The group is joined for a world size > 1 and for any process that torchrun launched (its
    ``TORCHELASTIC_RUN_ID``), so ``torchrun --nproc_per_node 1`` runs the DDP path that 8 GPUs run.
    The backend is NCCL on CUDA and gloo on CPU; ``device`` is ``"auto"``, ``"cpu"`` or ``"cuda"``.
    """
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' but CUDA is not available")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world_size = int(os.environ.get("LOCAL_WORLD_SIZE", str(world_size)))
    torch_device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(torch_device)
    started = False
    launched = world_size > 1 or "TORCHELASTIC_RUN_ID" in os.environ
    if launched and not torch.distributed.is_initialized():
        backend = "nccl" if use_cuda else "gloo"
        torch.distributed.init_process_group(backend=backend, rank=rank, world_size=world_size)
        started = True
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    return Processes(rank, world_size, local_rank, local_world_size, torch_device, started, distributed)


class LossForward(nn.Module):
    """Routes ``model.loss`` through ``forward`` so DDP's gradient synchronisation hooks see it."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: dict, generator: torch.Generator) -> tuple[torch.Tensor, dict]:
        return self.model.loss(batch, generator=generator)


@torch.no_grad()
def or_reduce_flags(module: nn.Module) -> None:
    """Make boolean buffers (e.g. ``seen_elements``) the OR over all ranks."""
    for buffer in module.buffers():
        if buffer.dtype == torch.bool:
            flags = buffer.to(torch.uint8)
            torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MAX)
            buffer.copy_(flags.bool())


def mean_over_ranks(sums: dict[str, float], count: int, procs: Processes) -> dict[str, float]:
    """Average per-step values (``sums`` over ``count`` steps) over steps and ranks (collective under DDP)."""
    keys = sorted(sums)
    values = torch.tensor([sums[k] for k in keys] + [float(count)], dtype=torch.float64)
    if procs.distributed:
        values = values.to(procs.device)
        torch.distributed.all_reduce(values)
        values = values.cpu()
    return {k: float(v) / float(values[-1]) for k, v in zip(keys, values[:-1].tolist(), strict=True)}
