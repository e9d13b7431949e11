"""Exponential moving average of model weights (the weights used for validation and shipped)."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """A frozen copy of a model whose floating-point parameters and buffers track an EMA.

    ``ema = decay * ema + (1 - decay) * current`` after every optimiser step; integer buffers
    (e.g. counters) are copied. The copy lives on the model's device and is always in eval mode.

    Parameters
    ----------
    model
        The training model (unwrapped: not DDP, not compiled).
    decay
        EMA decay per step, in [0, 1).
    """

    def __init__(self, model: nn.Module, *, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
        self.module = copy.deepcopy(model).eval()
        self.module.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the EMA one step towards ``model``'s current weights."""
        current = dict(model.named_parameters())
        current.update(model.named_buffers())
        averages = dict(self.module.named_parameters())
        averages.update(self.module.named_buffers())
        for name, average in averages.items():
            value = current[name].detach()
            if average.is_floating_point():
                average.lerp_(value.to(average.dtype), 1.0 - self.decay)
            elif average.shape == value.shape:
                average.copy_(value)
            else:  # a data-sized buffer (e.g. the composition prior) set after the copy was made
                setattr(_owner(self.module, name), name.rpartition(".")[2], value.clone())

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The EMA weights, as a model ``state_dict``."""
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore EMA weights saved by :meth:`state_dict` (strict)."""
        self.module.load_state_dict(state)


def _owner(module: nn.Module, name: str) -> nn.Module:
    """The submodule that holds the parameter or buffer ``name`` (dotted)."""
    path = name.rpartition(".")[0]
    return module.get_submodule(path) if path else module
