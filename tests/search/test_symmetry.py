"""Projection of a structure onto a reference's space group."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk

from ase_unimat.search.symmetry import SymmetryError, project_onto_symmetry, symmetry_operations


def _group(atoms, symprec=1e-4) -> int:
    import spglib

    return spglib.get_symmetry_dataset((atoms.cell[:], atoms.get_scaled_positions(), atoms.numbers),
                                       symprec=symprec).number  # fmt: skip


def _rattled(atoms, *, seed: int, amount: float = 0.05):
    rng = np.random.default_rng(seed)
    out = atoms.copy()
    out.set_cell(atoms.cell[:] @ (np.eye(3) + rng.normal(0, 0.02, (3, 3))), scale_atoms=True)
    out.positions += rng.normal(0, amount, out.positions.shape)
    return out


def test_a_symmetric_structure_is_unchanged():
    rocksalt = bulk("NaCl", "rocksalt", a=5.64, cubic=True)  # 8 atoms, Fm-3m
    out = project_onto_symmetry(rocksalt, rocksalt)
    assert np.allclose(out.get_scaled_positions(), rocksalt.get_scaled_positions(), atol=1e-9)
    assert np.allclose(out.cell.cellpar(), rocksalt.cell.cellpar(), atol=1e-9)


def test_a_rattled_structure_gets_the_reference_symmetry_and_keeps_its_volume_and_order():
    rocksalt = bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    rattled = _rattled(rocksalt, seed=0)
    rattled.info["note"] = "kept"
    assert _group(rattled) == 1
    out = project_onto_symmetry(rattled, rocksalt)
    assert _group(out) == 225
    assert np.allclose(out.cell.cellpar()[3:], 90.0) and np.ptp(out.cell.cellpar()[:3]) < 1e-9
    assert out.get_volume() == pytest.approx(rattled.get_volume(), rel=1e-9)
    assert list(out.numbers) == list(rattled.numbers) and out.info["note"] == "kept"
    moved = out.get_scaled_positions() - rocksalt.get_scaled_positions()
    assert np.abs(moved - np.round(moved)).max() < 0.03  # each atom stays on its own site


def test_projection_is_idempotent_and_keeps_free_parameters():
    wurtzite = bulk("ZnO", "wurtzite", a=3.25, c=5.2, u=0.382)  # P6_3mc: u and c/a are free
    rattled = _rattled(wurtzite, seed=1, amount=0.03)
    once = project_onto_symmetry(rattled, wurtzite)
    twice = project_onto_symmetry(once, wurtzite)
    assert _group(once) == 186
    assert np.allclose(twice.get_scaled_positions(), once.get_scaled_positions(), atol=1e-9)
    assert np.allclose(twice.cell.cellpar(), once.cell.cellpar(), atol=1e-9)
    assert not np.isclose(once.cell.cellpar()[2] / once.cell.cellpar()[0], 5.2 / 3.25, atol=1e-4)  # c/a not reset


def test_operations_map_atoms_onto_atoms():
    rotations, translations, perms = symmetry_operations(bulk("NaCl", "rocksalt", a=5.64, cubic=True))
    assert len(rotations) == len(translations) == len(perms) == 192  # 48 point operations x 4 centrings
    assert all(sorted(p) == list(range(8)) for p in perms.tolist())


def test_structures_that_do_not_correspond_are_an_error():
    with pytest.raises(SymmetryError, match="atom by atom"):
        project_onto_symmetry(bulk("Cu", "fcc", a=3.6, cubic=True), bulk("NaCl", "rocksalt", a=5.64, cubic=True))
