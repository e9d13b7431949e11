"""The space-group condition of the atom network and classifier-free guidance over it."""

from __future__ import annotations

import pytest
import torch
from model_fixtures import small_batch, tiny_config

from ase_unimat.model.diffusion import build_model


def _model(**model):
    torch.manual_seed(0)
    net = build_model(tiny_config(spacegroup_condition=True, **model)).eval()
    with torch.no_grad():  # a non-trivial embedding, as after training
        net.network.spacegroup_emb.weight.normal_(0, 1.0)
    return net


def _inputs(batch):
    b = len(batch["coords"])
    return batch["coords"], torch.zeros(b, 6), torch.full((b,), 0.5), batch["composition"]


def test_spacegroup_changes_the_prediction_and_zero_is_none():
    model, batch = _model(), small_batch()
    coords, lattice, t, comp = _inputs(batch)
    b = len(coords)
    with torch.no_grad():
        none = model.predict(coords, lattice, t, comp, spacegroup=None)
        zero = model.predict(coords, lattice, t, comp, spacegroup=torch.zeros(b, dtype=torch.long))
        cubic = model.predict(coords, lattice, t, comp, spacegroup=torch.full((b,), 225))
    torch.testing.assert_close(none.lattice, zero.lattice)
    assert not torch.allclose(cubic.lattice, none.lattice)


@pytest.mark.parametrize("w", [0.0, 2.0, 3.5])
def test_guidance_is_uncond_plus_w_times_difference(w):
    model, batch = _model(), small_batch()
    coords, lattice, t, comp = _inputs(batch)
    sg = torch.full((len(coords),), 194)
    with torch.no_grad():
        cond = model.predict(coords, lattice, t, comp, spacegroup=sg, guidance=1.0)
        uncond = model.predict(coords, lattice, t, comp, spacegroup=None)
        guided = model.predict(coords, lattice, t, comp, spacegroup=sg, guidance=w)
    torch.testing.assert_close(guided.lattice, uncond.lattice + w * (cond.lattice - uncond.lattice), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(guided.coords, uncond.coords + w * (cond.coords - uncond.coords), atol=1e-5, rtol=1e-5)


def test_loss_uses_and_drops_the_batch_spacegroup():
    model, batch = _model(), small_batch()
    model.train()
    batch["spacegroup"] = torch.tensor([225.0, float("nan"), 194.0, 300.0, 1.0])[: len(batch["coords"])]
    g = torch.Generator().manual_seed(0)
    sg = model._training_spacegroup(batch, len(batch["coords"]), "cpu", lambda n: torch.ones(n))
    assert sg.tolist()[:4] == [225, 0, 194, 0]  # NaN and out-of-range are "none"
    dropped = model._training_spacegroup(batch, len(batch["coords"]), "cpu", lambda n: torch.zeros(n))
    assert dropped.eq(0).all()
    loss, _ = model.loss(batch, generator=g)
    loss.backward()
    assert model.network.spacegroup_emb.weight.grad.abs().sum() > 0
    assert model.guidable


def test_a_model_without_the_condition_has_nothing_to_guide():
    model = build_model(tiny_config())
    assert not model.guidable
    with pytest.raises(ValueError, match="atom network"):
        build_model(tiny_config("dense", spacegroup_condition=True))


def test_samplers_take_the_condition_and_refuse_guidance_without_one():
    from ase_unimat.core.formula import composition_grid
    from ase_unimat.model.sampler import get_sampler

    comp = torch.as_tensor(composition_grid("Mg2SiO4"), dtype=torch.float32)[None].expand(2, -1, -1)
    model = _model()
    for name in ("ancestral", "ddim"):
        sample = get_sampler(name)
        plain = sample(model, comp, seeds=[1, 2], steps=3)
        cubic = sample(model, comp, seeds=[1, 2], steps=3, spacegroup=[225, 225])
        guided = sample(model, comp, seeds=[1, 2], steps=3, spacegroup=[225, 225], guidance=3.0)
        assert not torch.allclose(plain[0], cubic[0]) and not torch.allclose(cubic[0], guided[0])  # coords
        with pytest.raises(ValueError, match="1-230"):
            sample(model, comp, seeds=[1, 2], steps=3, spacegroup=[225, 231])
        with pytest.raises(ValueError, match=">= 0"):
            sample(model, comp, seeds=[1, 2], steps=3, spacegroup=[225, 225], guidance=-1.0)
    plain_model = build_model(tiny_config()).eval()
    with pytest.raises(ValueError, match="no condition to guide"):
        get_sampler("ddim")(plain_model, comp, seeds=[1, 2], steps=3, guidance=2.0)
    with pytest.raises(ValueError, match="no space-group condition"):
        get_sampler("ddim")(plain_model, comp, seeds=[1, 2], steps=3, spacegroup=[1, 1])
