"""The default model shipped in models/ (unimat-mp-wide) loads offline and makes seeds of the requested composition."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")


def test_default_model_generates_the_requested_composition():
    from ase_unimat import generate

    structures = generate("Mg2SiO4", n=2, formula_units=1, seed=11, steps=20)
    assert [a.get_chemical_formula() for a in structures] == ["Mg2O4Si", "Mg2O4Si"]
    for atoms in structures:
        assert atoms.info["model"] == "unimat-mp-wide"
        volume_per_atom = atoms.get_volume() / len(atoms)
        assert 3.0 < volume_per_atom < 60.0
        assert np.all(atoms.pbc)


def test_default_template_reference_is_bundled():
    import h5py

    from ase_unimat.search.templates import default_reference

    path = default_reference()
    with h5py.File(path, "r") as f:  # the compact copy: sparse atoms, no dense tensor
        assert f["natoms"].shape[0] > 70000 and int(f.attrs["L"]) == 20
        assert f["atoms/z"].shape[0] == int(f["natoms"][:].sum())
