"""Tests of the dense grid network: shapes, classifier-free guidance, overfitting."""

from __future__ import annotations

import pytest
import torch
from model_fixtures import overfit, small_batch, tiny_config

from ase_unimat.model.diffusion import build_model


def _inputs(batch, seed=0):
    g = torch.Generator().manual_seed(seed)
    b = batch["coords"].shape[0]
    coords = torch.rand(batch["coords"].shape, generator=g)
    occupancy = torch.randn(batch["coords"].shape[:-1], generator=g)
    return coords, torch.randn(b, 6, generator=g), torch.rand(b, generator=g), occupancy


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(tiny_config("dense", width=16, depth=1)).eval()


def test_output_shapes(model):
    batch = small_batch()
    coords, lattice, t, occ = _inputs(batch)
    out = model.network(coords, lattice, t, batch["composition"], occupancy=occ)
    assert out.coords.shape == coords.shape
    assert out.occupancy.shape == occ.shape
    assert out.lattice.shape == (5, 6)


def test_needs_occupancy(model):
    batch = small_batch()
    coords, lattice, t, _ = _inputs(batch)
    with pytest.raises(ValueError, match="occupancy"):
        model.network(coords, lattice, t, batch["composition"])


def test_guidance_zero_is_unconditional_and_one_is_conditional(model):
    batch = small_batch()
    coords, lattice, t, occ = _inputs(batch)
    comp = batch["composition"]
    with torch.no_grad():
        uncond = model.network(coords, lattice, t, torch.zeros_like(comp), occupancy=occ)
        cond = model.network(coords, lattice, t, comp, occupancy=occ)
        w0 = model.predict(coords, lattice, t, comp, occupancy=occ, guidance=0.0)
        w1 = model.predict(coords, lattice, t, comp, occupancy=occ, guidance=1.0)
        w2 = model.predict(coords, lattice, t, comp, occupancy=occ, guidance=2.0)
    for name in ("coords", "lattice", "occupancy"):
        torch.testing.assert_close(getattr(w0, name), getattr(uncond, name))
        torch.testing.assert_close(getattr(w1, name), getattr(cond, name))
        expected = getattr(uncond, name) + 2.0 * (getattr(cond, name) - getattr(uncond, name))
        torch.testing.assert_close(getattr(w2, name), expected, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(cond.coords, uncond.coords)


def test_tiny_dense_model_overfits_one_batch():
    torch.manual_seed(0)
    model = build_model(tiny_config("dense", width=16, depth=1))
    batch = {k: v[:3] for k, v in small_batch().items()}
    first, last = overfit(model, batch, steps=100, lr=5e-3)
    assert last < first / 10
