"""Tests of ase_unimat.model.diffusion: wrapped-normal maths, schedules, the loss and model buffers."""

from __future__ import annotations

import math

import pytest
import torch
from model_fixtures import small_batch, tiny_config

from ase_unimat.model.diffusion import (
    alpha_bar_cosine,
    alpha_bar_linear,
    build_model,
    sigma_schedule,
    wrap_displacement,
    wrapped_normal_score,
    wrapped_normal_score_rms,
)
from ase_unimat.model.network_common import LatticeScaler


def _log_density(x: torch.Tensor, sigma: float) -> torch.Tensor:
    k = torch.arange(-6, 7, dtype=torch.float64)
    return torch.logsumexp(-((x[:, None] + k) ** 2) / (2 * sigma**2), dim=1)


@pytest.mark.parametrize("sigma", [0.01, 0.1, 0.3, 0.6])
def test_wrapped_normal_score_is_gradient_of_log_density(sigma):
    x = torch.linspace(-1.4, 1.4, 57, dtype=torch.float64).requires_grad_(True)
    (grad,) = torch.autograd.grad(_log_density(x, sigma).sum(), x)
    score = wrapped_normal_score(x.detach(), torch.full_like(x, sigma), n_images=4)
    torch.testing.assert_close(score, grad, atol=1e-6, rtol=1e-6)


def test_score_rms_matches_gaussian_limit_and_monte_carlo():
    small = wrapped_normal_score_rms(torch.tensor([0.005, 0.01]), n_images=3)
    torch.testing.assert_close(small, 1 / torch.tensor([0.005, 0.01]), rtol=2e-3, atol=0)
    sigma = 0.4
    g = torch.Generator().manual_seed(0)
    d = sigma * torch.randn(200_000, generator=g, dtype=torch.float64)
    mc = wrapped_normal_score(d, torch.full_like(d, sigma), n_images=3).square().mean().sqrt()
    exact = wrapped_normal_score_rms(torch.tensor([sigma], dtype=torch.float64), n_images=3)[0]
    assert abs(float(mc) / float(exact) - 1) < 0.02


def test_wrap_displacement_range():
    d = torch.tensor([-1.7, -0.5, 0.0, 0.49, 0.5, 2.3])
    w = wrap_displacement(d)
    assert torch.all((w >= -0.5) & (w < 0.5))
    torch.testing.assert_close(torch.remainder(w - d, 1.0).clamp(max=1 - 1e-6), torch.zeros_like(d), atol=1e-6, rtol=0)


def test_schedules_are_monotone_with_the_documented_ends():
    t = torch.linspace(0, 1, 101)
    sigma = sigma_schedule(t, 0.005, 0.5)
    assert math.isclose(float(sigma[0]), 0.005, rel_tol=1e-5) and math.isclose(float(sigma[-1]), 0.5, rel_tol=1e-5)
    assert torch.all(sigma.diff() > 0)
    for ab in (alpha_bar_cosine(t), alpha_bar_linear(t, beta_min=1e-4, beta_max=0.02, timesteps=1000)):
        assert float(ab[0]) > 0.999 and float(ab[-1]) < 1e-3
        assert torch.all(ab.diff() <= 0)


def test_lattice_scaler_round_trip():
    scaler = LatticeScaler([1.0, 1.0, 1.2, 85.0, 85.0, 85.0], [0.3, 0.3, 0.3, 25.0, 25.0, 25.0])
    lattice = torch.tensor([[5.6, 5.6, 5.6, 90.0, 90.0, 90.0], [3.1, 4.2, 7.7, 70.0, 100.0, 120.0]])
    natoms = torch.tensor([8, 3])
    torch.testing.assert_close(scaler.decode(scaler.encode(lattice, natoms), natoms), lattice)


@pytest.mark.parametrize("network", ["atoms", "dense"])
def test_loss_terms_and_determinism(network):
    torch.manual_seed(0)
    model = build_model(tiny_config(network, width=16, depth=1))
    batch = small_batch()
    loss1, terms1 = model.loss(batch, generator=torch.Generator().manual_seed(3))
    loss2, _ = model.loss(batch, generator=torch.Generator().manual_seed(3))
    assert loss1.ndim == 0 and torch.isfinite(loss1)
    assert loss1.item() == loss2.item()
    expected = {"coord", "lattice", "loss"} | ({"occupancy"} if network == "dense" else set())
    assert set(terms1) == expected
    assert all(isinstance(v, float) for v in terms1.values())
    loss1.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_coord_loss_ignores_empty_slots():
    torch.manual_seed(0)
    model = build_model(tiny_config("atoms"))
    batch = small_batch()
    changed = dict(batch)
    empty = batch["coords"] < -0.5
    changed["coords"] = torch.where(empty, torch.full_like(batch["coords"], -0.99), batch["coords"])
    a, _ = model.loss(batch, generator=torch.Generator().manual_seed(1))
    b, _ = model.loss(changed, generator=torch.Generator().manual_seed(1))
    assert a.item() == b.item()


def test_seen_elements_and_composition_prior_survive_state_dict():
    model = build_model(tiny_config("atoms"))
    batch = small_batch()
    model.train()
    model.loss(batch, generator=torch.Generator().manual_seed(0))
    assert int(model.seen_elements.sum()) == 8  # Na Cl Si Cu Zn S Mg O
    model.set_composition_prior(torch.cat([batch["composition"], batch["composition"][:2]]))
    assert model.prior_compositions.shape == (5, 9, 18)  # duplicates removed
    fresh = build_model(tiny_config("atoms"))
    assert fresh.prior_compositions.shape[0] == 0
    fresh.load_state_dict(model.state_dict())
    assert torch.equal(fresh.prior_compositions, model.prior_compositions)
    assert torch.equal(fresh.seen_elements, model.seen_elements)
    state = model.state_dict()  # the prior is stored sparse: the non-zero counts only
    assert "prior_compositions" not in state and int(state["prior_compositions.rows"]) == 5
    assert len(state["prior_compositions.count"]) == int((model.prior_compositions > 0).sum())
    dense = {k: v for k, v in state.items() if not k.startswith("prior_compositions.")}
    dense["prior_compositions"] = model.prior_compositions.clone()  # an older file: the dense buffer
    older = build_model(tiny_config("atoms"))
    older.load_state_dict(dense)
    assert torch.equal(older.prior_compositions, model.prior_compositions)
    state["prior_compositions.index"][0] = 10**6  # a corrupt index is refused, not silently dropped
    with pytest.raises(RuntimeError, match="out of range"):
        build_model(tiny_config("atoms")).load_state_dict(state)


def test_set_composition_prior_checks_shape():
    model = build_model(tiny_config("atoms"))
    with pytest.raises(ValueError, match="shape"):
        model.set_composition_prior(torch.zeros(3, 162))


@pytest.mark.parametrize("network", ["atoms", "dense"])
def test_loss_runs_under_bf16_autocast(network):
    model = build_model(tiny_config(network, width=16, depth=1))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _ = model.loss(small_batch(), generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert torch.isfinite(loss)
