"""The GPU benchmark's first two sections: the environment, and one batch's loss in fp32 against bf16.

It owns :func:`environment` (torch, CUDA, the GPU, bf16 and NCCL support) and :func:`bf16_loss`
(one batch of the shipped reference data through the shipped model in fp32 and under bf16 autocast,
the same diffusion noise: both losses, their relative difference, finite gradients).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from bench._gpu_common import autocast, reference_batch
from bench._gpu_plan import SHIPPED, Plan

# torch and ase_unimat are imported inside the functions: `python -m bench --list` imports bench.gpu and this module.


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
