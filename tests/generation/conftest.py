"""Fixtures of the generation tests."""

from __future__ import annotations

import pytest
import torch
from model_fixtures import small_batch, tiny_config

from ase_unimat.model.config import to_dict
from ase_unimat.model.diffusion import build_model


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny atom model with the composition prior of ``small_batch()``, saved as a checkpoint file."""
    torch.manual_seed(0)
    model = build_model(tiny_config("atoms"))
    model.set_composition_prior(small_batch()["composition"])
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    torch.save({"config": to_dict(model.config), "model": model.state_dict(), "ema": model.state_dict(), "step": 1}, path)
    return path
