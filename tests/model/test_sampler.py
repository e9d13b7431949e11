"""Tests of ase_unimat.model.sampler: compositions, per-sample seeds, decoding and lattice repair."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from model_fixtures import small_batch, tiny_config

from ase_unimat.core.formula import composition_grid, counts_from_grid
from ase_unimat.model.diffusion import build_model
from ase_unimat.model.sampler import SAMPLERS, get_sampler, repair_lattice, to_atoms


@pytest.fixture(scope="module")
def atom_model():
    torch.manual_seed(0)
    model = build_model(tiny_config("atoms"))
    model.set_composition_prior(small_batch()["composition"])
    return model.eval()


@pytest.fixture(scope="module")
def dense_model():
    torch.manual_seed(0)
    return build_model(tiny_config("dense", width=8, depth=1, heads=2)).eval()


def _compositions(*formulas):
    return torch.as_tensor(np.stack([composition_grid(f) for f in formulas]), dtype=torch.float32)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_samples_have_exactly_the_requested_composition(atom_model, name):
    formulas = ["Mg2SiO4", "NaCl", "Cu", "ZnS"]
    coords, lattice = get_sampler(name)(atom_model, _compositions(*formulas), seeds=[0, 1, 2, 3], steps=6, guidance=1.0)
    assert coords.shape == (4, 8, 9, 18, 3) and lattice.shape == (4, 6)
    structures = to_atoms(coords, lattice, info={"sampler": name})
    for atoms, formula in zip(structures, formulas, strict=True):
        assert atoms.get_chemical_formula(mode="hill") == composition_formula(formula)
        assert np.all(atoms.pbc) and atoms.get_volume() > 0
        frac = atoms.get_scaled_positions(wrap=False)
        assert np.all((frac >= 0) & (frac < 1))
        assert atoms.info["sampler"] == name and "lattice_repaired" in atoms.info


def composition_formula(formula: str) -> str:
    from ase import Atoms

    counts = counts_from_grid(composition_grid(formula))
    return Atoms("".join(f"{s}{n}" for s, n in counts.items())).get_chemical_formula(mode="hill")


@pytest.mark.parametrize("name", sorted(SAMPLERS))
@pytest.mark.parametrize("network", ["atoms", "dense"])
def test_per_sample_seed_is_independent_of_the_batch(atom_model, dense_model, name, network):
    model = atom_model if network == "atoms" else dense_model
    sample = get_sampler(name)
    batch = _compositions("Mg2SiO4", "NaCl", "ZnS")
    w = 1.5 if network == "dense" else 1.0  # the plain atom network has nothing to guide
    coords, lattice = sample(model, batch, seeds=[11, 12, 13], steps=4, guidance=w)
    alone_c, alone_l = sample(model, batch[1:2], seeds=[12], steps=4, guidance=w)
    torch.testing.assert_close(alone_c[0], coords[1], atol=1e-4, rtol=0)
    torch.testing.assert_close(alone_l[0], lattice[1], atol=1e-4, rtol=1e-4)
    other_c, _ = sample(model, batch[1:2], seeds=[99], steps=4, guidance=w)
    assert not torch.allclose(other_c[0], coords[1])


def test_unconditional_atom_sampling_draws_from_the_prior(atom_model):
    coords, lattice = get_sampler("ddim")(atom_model, None, seeds=list(range(6)), steps=3, guidance=1.0)
    prior = {tuple(c.flatten().tolist()) for c in atom_model.prior_compositions.long()}
    drawn = (coords[..., 0] > -0.5).sum(1)  # (B, 9, 18)
    assert all(tuple(c.flatten().tolist()) in prior for c in drawn)


def test_unconditional_without_prior_is_an_error():
    model = build_model(tiny_config("atoms")).eval()
    with pytest.raises(ValueError, match="no composition prior"):
        get_sampler("ddim")(model, None, seeds=[0], steps=2, guidance=1.0)


def test_dense_unconditional_sampling_generates_occupancy(dense_model):
    coords, lattice = get_sampler("ddim")(dense_model, None, seeds=[0, 1], steps=3, guidance=1.0)
    occupied = coords[..., 0] > -0.5
    assert coords.shape == (2, 8, 9, 18, 3) and lattice.shape == (2, 6)
    assert torch.all(coords[occupied] >= 0) and torch.all(coords[~occupied] == -1)


def test_bad_arguments():
    model = build_model(tiny_config("atoms")).eval()
    with pytest.raises(ValueError, match="steps"):
        get_sampler("ddim")(model, _compositions("NaCl"), seeds=[0], steps=0, guidance=1.0)
    with pytest.raises(ValueError, match="seeds"):
        get_sampler("ddim")(model, _compositions("NaCl"), seeds=[0, 1], steps=2, guidance=1.0)
    with pytest.raises(ValueError, match="unknown sampler"):
        get_sampler("euler")


@pytest.mark.parametrize(
    "lattice",
    [[4.0, 5.0, 6.0, 90.0, 90.0, 90.0], [0.2, 5.0, 6.0, 3.0, 179.0, 90.0], [5, 5, 5, 170, 170, 170], [5, 5, 5, 10, 10, 10]],
)
def test_repair_lattice_gives_a_valid_cell(lattice):
    repaired, changed = repair_lattice(lattice)
    from ase.geometry import cellpar_to_cell

    volume = np.linalg.det(cellpar_to_cell(repaired))
    assert volume > 0.05 * np.prod(repaired[:3]) - 1e-9
    assert changed == (not np.allclose(repaired, lattice))
    assert changed == (lattice != [4.0, 5.0, 6.0, 90.0, 90.0, 90.0])


def test_repair_lattice_rejects_nan_and_to_atoms_rejects_empty_samples():
    with pytest.raises(ValueError, match="finite"):
        repair_lattice([np.nan, 1, 1, 90, 90, 90])
    coords = np.full((1, 8, 9, 18, 3), -1.0, dtype=np.float32)
    with pytest.raises(ValueError, match="no atoms"):
        to_atoms(coords, np.array([[4.0, 4, 4, 90, 90, 90]]))


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_low_strength_start_keeps_the_starting_structure(atom_model, name):
    from ase.build import bulk

    from ase_unimat.core.representation import encode

    start = bulk("NaCl", "rocksalt", a=5.64, cubic=True)  # Na4Cl4
    coords0, lattice0 = encode(start, n_slots=atom_model.n_slots)
    comp = _compositions("Na4Cl4")
    begin = (torch.as_tensor(coords0)[None], torch.as_tensor(lattice0, dtype=torch.float32)[None])
    sample = get_sampler(name)
    near, near_lattice = sample(atom_model, comp, seeds=[3], steps=20, start=begin, strength=0.05)
    far, _ = sample(atom_model, comp, seeds=[3], steps=20, start=begin, strength=1.0)
    plain, _ = sample(atom_model, comp, seeds=[3], steps=20)
    # one step of an untrained model from a barely noised start stays near it (distances on the torus)
    moved = to_atoms(near, near_lattice)[0]
    assert moved.get_chemical_formula() == start.get_chemical_formula()
    assert abs(moved.get_volume() / start.get_volume() - 1) < 0.5
    ordered = torch.as_tensor(coords0)[None]
    d_near = torch.remainder(near - ordered + 0.5, 1.0) - 0.5
    d_far = torch.remainder(far - ordered + 0.5, 1.0) - 0.5
    mask = ordered[..., 0] > -0.5
    assert d_near[mask].abs().mean() < 0.05 < d_far[mask].abs().mean()
    assert not torch.allclose(far, plain)  # strength 1 from a start still draws its own noise order


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_dense_network_samples_from_a_start(dense_model, name):
    from ase.build import bulk

    from ase_unimat.core.representation import encode

    coords0, lattice0 = encode(bulk("NaCl", "rocksalt", a=5.64), n_slots=dense_model.n_slots)
    begin = (torch.as_tensor(coords0)[None], torch.as_tensor(lattice0, dtype=torch.float32)[None])
    coords, lattice = get_sampler(name)(dense_model, _compositions("NaCl"), seeds=[1], steps=10, start=begin,
                                        strength=0.3, guidance=1.5)  # fmt: skip
    assert to_atoms(coords, lattice)[0].get_chemical_formula() == "ClNa"


def test_start_is_checked(atom_model):
    from ase.build import bulk

    from ase_unimat.core.representation import encode

    coords0, lattice0 = encode(bulk("NaCl", "rocksalt", a=5.64), n_slots=atom_model.n_slots)
    begin = (torch.as_tensor(coords0)[None], torch.as_tensor(lattice0, dtype=torch.float32)[None])
    sample = get_sampler("ancestral")
    with pytest.raises(ValueError, match="composition differs"):
        sample(atom_model, _compositions("KBr"), seeds=[0], steps=4, start=begin, strength=0.5)
    with pytest.raises(ValueError, match="strength"):
        sample(atom_model, _compositions("NaCl"), seeds=[0], steps=4, start=begin, strength=0.0)
    with pytest.raises(ValueError, match="start shapes"):
        sample(atom_model, _compositions("NaCl", "NaCl"), seeds=[0, 1], steps=4, start=begin, strength=0.5)
