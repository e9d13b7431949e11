"""ase_unimat.model.symmetry_constraint: the group average keeps symmetric samples and makes others symmetric."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk

torch = pytest.importorskip("torch")

from ase_unimat.core.representation import decode, encode  # noqa: E402
from ase_unimat.model.symmetry_constraint import SampleSymmetry, SymmetryConstraint  # noqa: E402


def wurtzite():
    return bulk("GaAs", "wurtzite", a=3.9, c=6.4) * (1, 1, 2)  # 8 atoms, P6_3mc, a free z


def max_symmetry_error(coords: np.ndarray, sample: SampleSymmetry) -> float:
    x = coords.reshape(-1, 3)[sample.sites].astype(np.float64)  # (N, 3)
    worst = 0.0
    for rot, shift, perm in zip(sample.rotations, sample.translations, sample.permutations, strict=True):
        delta = x @ rot.T + shift - x[perm]
        worst = max(worst, float(np.abs(delta - np.round(delta)).max()))
    return worst


def test_operations_are_those_of_the_structure_on_its_slots():
    atoms = wurtzite()
    sample = SampleSymmetry.of(atoms, n_slots=20)
    coords, _ = encode(atoms, n_slots=20)
    assert len(sample.rotations) == 24 and sample.permutations.shape == (24, 8)  # 12 ops x 2 (the supercell)
    assert max_symmetry_error(coords, sample) < 1e-5
    np.testing.assert_allclose(coords.reshape(-1, 3)[sample.sites], decode(coords, np.ones(6) * [1, 1, 1, 90, 90, 90]
                                                                          ).get_scaled_positions(), atol=1e-6)


def test_a_symmetric_sample_is_unchanged_and_a_rattled_one_becomes_symmetric():
    atoms = wurtzite()
    sample = SampleSymmetry.of(atoms, n_slots=20)
    coords, _ = encode(atoms, n_slots=20)
    batch = torch.as_tensor(np.stack([coords, coords]))  # (2, L, 9, 18, 3)
    rattled = batch.clone().reshape(2, -1, 3)
    rng = np.random.default_rng(0)
    rattled[1, sample.sites] += torch.as_tensor(rng.normal(0, 0.02, size=(8, 3)), dtype=rattled.dtype)
    rattled = rattled.reshape(batch.shape)
    out = SymmetryConstraint([sample, sample])(rattled)
    np.testing.assert_allclose(out[0].numpy(), batch[0].numpy(), atol=1e-6)
    assert max_symmetry_error(rattled[1].numpy(), sample) > 0.01
    assert max_symmetry_error(out[1].numpy(), sample) < 1e-4


def test_uniform_noise_is_symmetric_after_one_call_and_free_samples_are_untouched():
    atoms = wurtzite()
    sample = SampleSymmetry.of(atoms, n_slots=20)
    coords, _ = encode(atoms, n_slots=20)
    noisy = torch.as_tensor(np.stack([coords, coords])).reshape(2, -1, 3)
    generator = torch.Generator().manual_seed(1)
    noisy[:, sample.sites] = torch.rand((2, 8, 3), generator=generator)
    noisy = noisy.reshape(2, *coords.shape)
    out = SymmetryConstraint([sample, None])(noisy)
    assert max_symmetry_error(out[0].numpy(), sample) < 1e-5
    x = out[0].reshape(-1, 3)[sample.sites].numpy()
    offset = x - sample.positions
    assert np.allclose((offset - np.round(offset))[:, :2], 0.0, atol=1e-5)  # on the sites' 3m axes: only z is free
    assert torch.equal(out[1], noisy[1])
    assert float(out.min()) >= -1.0 and float(out.max()) < 1.0


def test_bad_use_is_an_error():
    with pytest.raises(ValueError, match="2 samples but a constraint for 1"):
        SymmetryConstraint([None])(torch.zeros(2, 20, 9, 18, 3))


def test_generate_keeps_the_symmetry_of_its_starts():
    from pathlib import Path

    import spglib

    from ase_unimat.core.symmetry_ops import symmetry_operations
    from ase_unimat.generation import generate
    from ase_unimat.model.config import load_config
    from ase_unimat.model.diffusion import build_model
    from ase_unimat.search.symmetry import symmetrized_cell

    torch.manual_seed(0)
    net = build_model(load_config(Path(__file__).resolve().parents[2] / "models" / "configs" / "test.toml"))
    start = wurtzite()
    with pytest.raises(ValueError, match="keep_symmetry needs start"):
        generate({"Ga": 4, "As": 4}, n=1, model=net, keep_symmetry=True, device="cpu")
    out = generate({"Ga": 4, "As": 4}, seeds=[3, 4], model=net, start=[start, start], strength=1.0,
                   keep_symmetry=True, steps=4, device="cpu")  # fmt: skip
    rotations, _, _ = symmetry_operations(start)
    for atoms in out:
        assert atoms.info["symmetry_kept"] is True
        atoms.set_cell(symmetrized_cell(atoms.cell[:], rotations), scale_atoms=True)
        found = spglib.get_symmetry_dataset((atoms.cell[:], atoms.get_scaled_positions(), atoms.numbers), symprec=1e-3)
        assert found.number in (186, 194)  # P6_3mc, or the centrosymmetric supergroup when z lands there
