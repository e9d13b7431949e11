"""Tests of ase_unimat.generation.compositions: de novo compositions from a model's training distribution."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from model_fixtures import small_batch, tiny_config

from ase_unimat.core.formula import FormulaError, composition_grid
from ase_unimat.generation.compositions import CompositionPrior, parse_elements
from ase_unimat.model.diffusion import build_model


@pytest.fixture(scope="module")
def prior():
    torch.manual_seed(0)
    model = build_model(tiny_config("atoms"))
    model.set_composition_prior(small_batch()["composition"])  # NaCl x4, Si2, Cu, ZnS x4, MgO
    return CompositionPrior.from_model(model)


def test_prior_draws_training_compositions_reproducibly(prior):
    known = [{"Na": 4, "Cl": 4}, {"Si": 2}, {"Cu": 1}, {"Zn": 4, "S": 4}, {"Mg": 1, "O": 1}]
    draws = [prior.draw(seed) for seed in range(40)]
    assert all(d.counts in known for d in draws)
    assert len({tuple(sorted(d.counts.items())) for d in draws}) == len(known)
    assert prior.draw(7) == prior.draw(7)
    assert draws[0].info == {"composition_source": "prior", "composition_prior": "model", "charge_balanced": False,
                             "composition_tries": 1}


def test_elements_keep_a_training_stoichiometry_with_exactly_those_elements(prior):
    draws = [prior.draw(seed, elements=["Zn", "O"]) for seed in range(20)]
    assert all(set(d.counts) == {"Zn", "O"} for d in draws)
    assert all(sorted(d.counts.values()) in ([4, 4], [1, 1]) for d in draws)
    assert {d.info["composition_source"] for d in draws} == {"elements"}


def test_charge_balance_filter(prior):
    draws = [prior.draw(seed, elements=["Zn", "O"], charge_balanced=True) for seed in range(5)]
    assert all(d.info["charge_balanced"] for d in draws)
    # the prior's two-element stoichiometries are 1:1 and 4:4, and CuSi is not SMACT-valid
    assert set(prior.draw(0, elements=["Si", "Cu"]).counts) == {"Si", "Cu"}
    with pytest.raises(FormulaError, match="no charge-balanced composition of Si, Cu in 50 draws"):
        prior.draw(0, elements=["Si", "Cu"], charge_balanced=True, max_tries=50)


def test_reference_file_when_the_model_has_no_prior(tmp_path):
    import h5py

    model = build_model(tiny_config("atoms"))
    grids = np.stack([composition_grid({"Ti": 1, "O": 2})] * 3)
    with h5py.File(tmp_path / "ref.h5", "w") as h5:
        h5["composition"] = grids
    with pytest.raises(ValueError, match="no composition prior"):
        CompositionPrior.from_model(model)
    drawn = CompositionPrior.from_model(model, reference=tmp_path / "ref.h5").draw(3)
    assert drawn.counts == {"Ti": 1, "O": 2} and drawn.info["composition_prior"].endswith("ref.h5")


@pytest.mark.parametrize(
    ("elements", "message"),
    [("Li,Xx", "unknown element symbol 'Xx'"), ("", "no elements"), ("O,O", "given twice")],
)
def test_parse_elements_errors(elements, message):
    with pytest.raises(FormulaError, match=message):
        parse_elements(elements)


def test_unseen_elements_and_impossible_counts(prior):
    assert parse_elements("Li, Fe P,O") == ["Li", "Fe", "P", "O"]
    with pytest.raises(FormulaError, match="Pu never appeared"):
        prior.check_elements(["Pu", "O"])
    with pytest.raises(FormulaError, match="no training composition has 3 distinct elements"):
        prior.check_elements(["Na", "Cl", "O"])
