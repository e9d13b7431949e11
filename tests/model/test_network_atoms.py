"""Tests of the atom-scaled network: shapes, invariances, padding independence, overfitting."""

from __future__ import annotations

import torch
from model_fixtures import N_SLOTS, overfit, small_batch, tiny_config

from ase_unimat.model.diffusion import build_model
from ase_unimat.model.network_atoms import gather_slots


def _inputs(batch, seed=0):
    g = torch.Generator().manual_seed(seed)
    b = batch["coords"].shape[0]
    coords = torch.where(batch["coords"] > -0.5, torch.rand(batch["coords"].shape, generator=g), batch["coords"])
    return coords, torch.randn(b, 6, generator=g), torch.rand(b, generator=g), batch["composition"]


def _network():
    torch.manual_seed(0)
    return build_model(tiny_config("atoms")).network.eval()


def test_gather_slots_takes_occupied_slots_first():
    batch = small_batch()
    index, mask = gather_slots(batch["composition"], N_SLOTS)
    assert mask.sum(1).tolist() == batch["natoms"].tolist()
    occupied = (batch["coords"][..., 0] > -0.5).flatten(1)
    assert torch.all(torch.gather(occupied, 1, index)[mask])


def test_output_shapes_and_zero_outside_atoms():
    batch = small_batch()
    out = _network()(*_inputs(batch))
    assert out.coords.shape == batch["coords"].shape
    assert out.lattice.shape == (5, 6)
    assert out.occupancy is None
    empty = batch["coords"][..., 0] < -0.5
    assert torch.all(out.coords[empty] == 0)
    assert out.coords[~empty].abs().sum() > 0


def test_translation_invariance():
    batch = small_batch()
    net = _network()
    coords, lattice, t, comp = _inputs(batch)
    shift = torch.tensor([0.37, -0.81, 0.55])
    moved = torch.where(coords > -0.5, torch.remainder(coords + shift, 1.0), coords)
    with torch.no_grad():
        a, b = net(coords, lattice, t, comp), net(moved, lattice, t, comp)
    torch.testing.assert_close(a.coords, b.coords, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(a.lattice, b.lattice, atol=2e-5, rtol=1e-4)


def test_sample_output_independent_of_padding_partners():
    batch = small_batch()
    net = _network()
    coords, lattice, t, comp = _inputs(batch)
    with torch.no_grad():
        together = net(coords, lattice, t, comp)
        alone = net(coords[1:2], lattice[1:2], t[1:2], comp[1:2])  # Si (2 atoms) without the 8-atom cells
    torch.testing.assert_close(together.coords[1:2], alone.coords, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(together.lattice[1:2], alone.lattice, atol=1e-5, rtol=1e-4)


def test_tiny_atom_model_overfits_one_batch():
    torch.manual_seed(0)
    model = build_model(tiny_config("atoms"))
    first, last = overfit(model, small_batch(), steps=120)
    assert last < first / 10
