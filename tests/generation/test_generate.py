"""Tests of ase_unimat.generation: load_model, generate() and the ASE-GA start generator."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from model_fixtures import small_batch, tiny_config

import ase_unimat
from ase_unimat.core.formula import FormulaError
from ase_unimat.generation import UniMatStartGenerator, generate, load_model
from ase_unimat.model.config import to_dict
from ase_unimat.model.diffusion import build_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny atom model saved like an exported model (models/<name>/model.pt)."""
    torch.manual_seed(0)
    model = build_model(tiny_config("atoms"))
    model.set_composition_prior(small_batch()["composition"])  # elements Na Cl Si Cu Zn S Mg O
    folder = tmp_path_factory.mktemp("models") / "tiny-model"
    folder.mkdir()
    state = {"config": to_dict(model.config), "model": model.state_dict(), "step": 0}
    torch.save(state, folder / "model.pt")
    return folder


def test_generate_is_exported_lazily_from_the_package():
    assert ase_unimat.generate is generate
    assert callable(ase_unimat.load_model)


def test_generate_returns_the_requested_composition_and_info(model_dir):
    structures = generate("MgO", n=3, formula_units=2, model=model_dir, steps=4, seed=5, device="cpu")
    assert len(structures) == 3
    for i, atoms in enumerate(structures):
        assert isinstance(atoms, Atoms)
        assert atoms.get_chemical_formula() == "Mg2O2"
        assert atoms.info["seed"] == 5 + i
        assert atoms.info["model"] == "tiny-model"
        assert atoms.info["source"] == "unimat"
        assert atoms.info["steps"] == 4 and atoms.info["sampler"] == "ancestral" and atoms.info["guidance"] == 1.0


def test_one_structure_is_reproducible_from_its_seed(model_dir):
    many = generate({"Zn": 2, "S": 2}, n=4, model=model_dir, steps=4, seed=10, batch_size=3, device="cpu")
    one = generate("ZnS", n=1, formula_units=2, model=model_dir, steps=4, seed=12, device="cpu")[0]
    np.testing.assert_allclose(one.cell.cellpar(), many[2].cell.cellpar(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(one.get_scaled_positions(), many[2].get_scaled_positions(), atol=1e-4)
    same = generate("ZnS", seeds=[12], formula_units=2, model=model_dir, steps=4, device="cpu")[0]
    np.testing.assert_allclose(same.positions, one.positions)


def test_checkpoint_file_uses_ema_weights(model_dir, tmp_path):
    state = torch.load(model_dir / "model.pt", weights_only=True)
    ema = {k: (v + 1.0 if v.is_floating_point() else v) for k, v in state["model"].items()}
    torch.save({**state, "ema": ema}, tmp_path / "ckpt.pt")
    loaded = load_model(tmp_path / "ckpt.pt", device="cpu")
    name, value = next((k, v) for k, v in ema.items() if v.is_floating_point())
    torch.testing.assert_close(loaded.state_dict()[name], value)
    assert loaded.model_name == "ckpt" and not loaded.training


@pytest.mark.parametrize(
    ("formula", "kwargs", "message"),
    [
        ("Xx2O", {}, "unknown element"),
        ("PuO2", {}, "never appeared"),
        ("Mg9O9", {}, "more than L = 8"),
        ("MgO", {"formula_units": 0}, "formula units"),
        ({}, {}, "empty formula"),
    ],
)
def test_clear_errors(model_dir, formula, kwargs, message):
    with pytest.raises(FormulaError, match=message):
        generate(formula, n=1, model=model_dir, steps=2, device="cpu", **kwargs)


def test_missing_models(monkeypatch, tmp_path):
    import sys

    monkeypatch.setattr(sys.modules["ase_unimat.model.bundled"], "models_dirs", lambda: [tmp_path])
    with pytest.raises(FileNotFoundError, match="no default model.*pass model="):
        generate("NaCl", n=1)
    with pytest.raises(FileNotFoundError, match="not found"):
        load_model(tmp_path / "nothing-here")
    bad = tmp_path / "bad.pt"
    torch.save({"weights": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match="not an ase-unimat checkpoint"):
        load_model(bad)


def test_start_generator_gives_new_candidates(model_dir):
    slab = Atoms(pbc=True)
    generator = UniMatStartGenerator(slab, [("Na", 2), ("Cl", 2)], None, 3, model=model_dir, steps=3, batch_size=2,
                                     device="cpu")
    candidates = [generator.get_new_candidate() for _ in range(3)]
    assert [a.info["seed"] for a in candidates] == [0, 1, 2]
    assert all(a.get_chemical_formula() == "Cl2Na2" for a in candidates)


def test_start_generator_fixed_cell_blmin_and_errors(model_dir):
    slab = Atoms(cell=[5.0, 5.0, 5.0], pbc=True)
    generator = UniMatStartGenerator(slab, [11, 17], {(11, 17): 0.1}, 0, model=model_dir, steps=3, device="cpu")
    atoms = generator.get_new_candidate()
    np.testing.assert_allclose(atoms.cell.cellpar(), [5, 5, 5, 90, 90, 90])
    impossible = UniMatStartGenerator(slab, ["Na", "Cl"], {(11, 17): 50.0}, 0, model=model_dir, steps=2,
                                      device="cpu", batch_size=2)
    with pytest.raises(RuntimeError, match="blmin"):
        impossible.get_new_candidate(maxiter=3)
    with pytest.raises(ValueError, match="single atoms"):
        UniMatStartGenerator(slab, [("N2", 4)], model=model_dir, device="cpu")
    with pytest.raises(ValueError, match="no atoms"):
        UniMatStartGenerator(Atoms("Cu", cell=[3, 3, 3], pbc=True), ["Na"], model=model_dir, device="cpu")
