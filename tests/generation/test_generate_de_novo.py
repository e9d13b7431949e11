"""Tests of de novo generation and the space-group condition in ase_unimat.generation.generate()."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from model_fixtures import small_batch, tiny_config

from ase_unimat.core.formula import FormulaError, composition_grid
from ase_unimat.generation import generate
from ase_unimat.generation.spacegroups import SpacegroupPrior
from ase_unimat.model.config import to_dict
from ase_unimat.model.diffusion import build_model


def _save(tmp_path_factory, name: str, **model) -> object:
    torch.manual_seed(0)
    net = build_model(tiny_config("atoms", **model))
    net.set_composition_prior(small_batch()["composition"])  # elements Na Cl Si Cu Zn S Mg O
    if model.get("spacegroup_condition"):
        with torch.no_grad():  # a non-trivial embedding, as after training
            net.network.spacegroup_emb.weight.normal_(0, 1.0)
    folder = tmp_path_factory.mktemp(name)
    torch.save({"config": to_dict(net.config), "model": net.state_dict(), "step": 0}, folder / "model.pt")
    return folder / "model.pt"


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    return _save(tmp_path_factory, "plain")


@pytest.fixture(scope="module")
def sg_model(tmp_path_factory):
    return _save(tmp_path_factory, "sg", spacegroup_condition=True)


@pytest.fixture(scope="module")
def sg_prior():
    rows = [({"Na": 1, "Cl": 1}, 225), ({"Zn": 1, "S": 1}, 216), ({"Si": 2}, 227), ({"Cu": 1}, 225)]
    grids = np.stack([composition_grid(c) for c, _ in rows])
    return SpacegroupPrior(grids, np.array([g for _, g in rows]), min_count=1)


def test_de_novo_draws_compositions_and_records_how(plain):
    known = {"Cl4Na4", "Si2", "Cu", "S4Zn4", "MgO"}
    structures = generate(n=6, model=plain, steps=2, seed=3, device="cpu")
    assert {a.get_chemical_formula(mode="hill") for a in structures} <= known
    assert all(a.info["composition_source"] == "prior" and a.info["composition_prior"] == "model" for a in structures)
    again = generate(None, seeds=[5], model=plain, steps=2, device="cpu")[0]
    assert again.get_chemical_formula() == structures[2].get_chemical_formula()
    np.testing.assert_allclose(again.get_scaled_positions(), structures[2].get_scaled_positions(), atol=1e-6)


def test_elements_and_charge_balance(plain):
    structures = generate(n=4, elements="Zn,O", charge_balanced=True, model=plain, steps=2, device="cpu")
    assert all(set(a.get_chemical_symbols()) == {"Zn", "O"} for a in structures)
    assert all(a.info["composition_source"] == "elements" and a.info["charge_balanced"] for a in structures)


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("NaCl",), {"elements": "Na,Cl"}, "not both"),
        ((), {"elements": "Na,Xx"}, "unknown element symbol 'Xx'"),
        ((), {"elements": "Pu,O"}, "Pu never appeared"),
        ((), {"formula_units": 2}, "need a formula"),
    ],
)
def test_de_novo_errors(plain, args, kwargs, message):
    with pytest.raises(FormulaError, match=message):
        generate(*args, n=1, model=plain, steps=2, device="cpu", **kwargs)


def test_n_zero_and_guidance_without_a_condition_are_refused(plain):
    with pytest.raises(ValueError, match="positive integer"):
        generate("NaCl", n=0, model=plain, steps=2, device="cpu")
    with pytest.raises(ValueError, match="no condition to guide"):
        generate("NaCl", n=1, model=plain, steps=2, device="cpu", guidance=2.0)
    with pytest.raises(ValueError, match="takes no space-group condition"):
        generate("NaCl", n=1, model=plain, steps=2, device="cpu", spacegroup=225)


def test_spacegroup_auto_given_and_none(sg_model, sg_prior):
    kwargs = {"model": sg_model, "steps": 2, "device": "cpu", "spacegroup_prior": sg_prior}
    auto = generate("NaCl", n=2, **kwargs)  # the default of a space-group model is "auto"
    assert {a.info["spacegroup"] for a in auto} <= {225, 216}  # the two 1:1 cells of the prior
    assert auto[0].info["spacegroup_source"] == "auto:stoichiometry"
    given = generate("NaCl", n=1, spacegroup=62, **kwargs)[0]
    assert given.info["spacegroup"] == 62 and given.info["spacegroup_source"] == "given"
    assert not np.allclose(given.get_scaled_positions(), auto[0].get_scaled_positions())
    none = generate("NaCl", n=1, spacegroup=None, **kwargs)[0]
    assert "spacegroup" not in none.info
    de_novo = generate(n=3, seed=1, **kwargs)
    assert all(a.info["spacegroup"] in (225, 216, 227) for a in de_novo)


def test_guidance_changes_samples_and_needs_a_space_group(sg_model, sg_prior):
    kwargs = {"model": sg_model, "steps": 3, "device": "cpu", "spacegroup": 225, "seed": 4}
    one, three = (generate("NaCl", n=1, guidance=w, **kwargs)[0] for w in (1.0, 3.0))
    assert not np.allclose(one.get_scaled_positions(), three.get_scaled_positions())
    with pytest.raises(ValueError, match="guidance != 1 acts on the space group"):
        generate("NaCl", n=1, model=sg_model, steps=2, device="cpu", spacegroup=None, guidance=2.0)
