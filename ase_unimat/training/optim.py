"""The trainer's optimiser and learning-rate schedule: AdamW with weight-decay groups, warm-up + cosine.

Owns the LR multiplier (linear warm-up from ~0 to 1, then cosine decay to ``min_lr_ratio``), the
AdamW parameter groups (decay on matrices and kernels only) and the optimiser + scheduler pair the
loop steps; both are stored in every checkpoint, so a resumed run continues the same schedule.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ase_unimat.model.config import TrainConfig


def warmup_cosine(step: int, *, warmup_steps: int, max_steps: int, min_ratio: float) -> float:
    """LR multiplier: linear warm-up from ~0 to 1 over ``warmup_steps``, then cosine to ``min_ratio``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, max_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: decay on matrices and kernels (ndim >= 2), none on biases, norms and embeddings' 1-D params."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(
    model: nn.Module, options: TrainConfig
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over ``model`` (``lr``, ``betas``, ``weight_decay``) and its warm-up + cosine LR scheduler."""
    optimizer = torch.optim.AdamW(param_groups(model, options.weight_decay), lr=options.lr, betas=tuple(options.betas))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: warmup_cosine(
            step, warmup_steps=options.warmup_steps, max_steps=options.total_steps, min_ratio=options.min_lr_ratio
        ),
    )
    return optimizer, scheduler
