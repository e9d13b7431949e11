"""Per-structure denoising errors (``UniMatModel.denoising_errors``) and the plausibility score built on them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk
from model_fixtures import overfit, small_batch, small_crystals, tiny_config

from ase_unimat.core.representation import composition_of, encode_batch
from ase_unimat.model.diffusion import build_model
from ase_unimat.model.plausibility import plausibility


def _model(**model):
    torch.manual_seed(0)
    return build_model(tiny_config(**model)).eval()


def test_loss_is_the_average_of_the_per_structure_errors():
    model, batch = _model(), small_batch()
    with torch.no_grad():
        _, terms = model.loss(batch, generator=torch.Generator().manual_seed(5))
        errors = model.denoising_errors(batch, generator=torch.Generator().manual_seed(5))
    assert errors.coord.shape == errors.lattice.shape == (len(batch["coords"]),)
    assert float(errors.coord.sum() / errors.n_coords.sum()) == pytest.approx(terms["coord"], rel=1e-5)
    assert float(errors.lattice.mean()) == pytest.approx(terms["lattice"], rel=1e-5)


def test_identical_structures_share_the_noise_and_score_alike():
    model = _model()
    nacl = bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    first = plausibility(model, [nacl, nacl.copy(), small_crystals()[1]], times=(0.1, 0.5), draws=2, seed=3)
    assert first.coord.shape == first.lattice.shape == (3, 2)
    np.testing.assert_allclose(first.coord[0], first.coord[1])
    np.testing.assert_allclose(first.lattice[0], first.lattice[1])
    again = plausibility(model, [nacl], times=(0.1, 0.5), draws=2, seed=3)
    np.testing.assert_allclose(again.score, first.score[:1], rtol=1e-6)
    other = plausibility(model, [nacl], times=(0.1, 0.5), draws=2, seed=4)
    assert not np.allclose(other.score, first.score[:1])
    assert not model.training


def test_a_model_fitted_to_a_structure_finds_it_more_plausible_than_a_rattled_copy():
    torch.manual_seed(0)
    model = build_model(tiny_config())
    nacl = bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    coords, lattice = encode_batch([nacl] * 4, n_slots=model.n_slots)
    batch = {"coords": torch.from_numpy(coords), "lattice": torch.from_numpy(lattice).float(),
             "composition": torch.from_numpy(composition_of(coords)).float()}  # fmt: skip
    overfit(model, batch, steps=150)
    rattled = nacl.copy()
    rattled.rattle(stdev=0.4, seed=1)
    scores = plausibility(model.eval(), [nacl, rattled], times=(0.05, 0.2, 0.4), draws=4, seed=0)
    assert scores.coord.mean(1)[0] < scores.coord.mean(1)[1]


def test_space_group_condition_is_used_and_checked():
    model = _model(spacegroup_condition=True)
    with torch.no_grad():
        model.network.spacegroup_emb.weight.normal_(0, 1.0)
    crystals = small_crystals()[:2]
    none = plausibility(model, crystals, times=(0.3,), draws=1)
    cubic = plausibility(model, crystals, spacegroups=[225, 227], times=(0.3,), draws=1)
    assert not np.allclose(none.lattice, cubic.lattice)
    with pytest.raises(ValueError, match="spacegroups"):
        plausibility(model, crystals, spacegroups=[225], times=(0.3,))
    with pytest.raises(ValueError, match="times"):
        plausibility(model, crystals, times=(0.0,))
    assert plausibility(model, [], times=(0.3,)).score.shape == (0,)
