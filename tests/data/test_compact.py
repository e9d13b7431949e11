"""ase_unimat.data.compact: a dataset file without its dense coords reads the same everywhere."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from ase.build import bulk

from ase_unimat.data.compact import compact_copy
from ase_unimat.data.hdf5 import read_atoms, write_structures


@pytest.fixture
def full(tmp_path):
    structures = [bulk("NaCl", "rocksalt", a=5.6), bulk("Si", "diamond", a=5.43), bulk("Cu", "fcc", a=3.6) * (2, 1, 1)]
    for i, atoms in enumerate(structures):
        atoms.info["material_id"] = f"x-{i}"
    path = tmp_path / "full.h5"
    write_structures(path, structures, properties={"spacegroup": [225, 227, 225], "band_gap": [5.0, 1.1, 0.0]})
    return path


def test_compact_copy_drops_only_the_dense_tensor(full, tmp_path):
    out = compact_copy(full, tmp_path / "ref.h5")
    with h5py.File(out) as h5, h5py.File(full) as h5_full:
        assert "coords" not in h5 and "coords" in h5_full and bool(h5.attrs["compact"])
        assert sorted(h5["properties"]) == ["band_gap", "spacegroup"]
        np.testing.assert_array_equal(h5["atoms/frac"][:], h5_full["atoms/frac"][:])
    for a, b in zip(read_atoms(out), read_atoms(full), strict=True):
        assert a.get_chemical_formula() == b.get_chemical_formula() and a.info == b.info
        np.testing.assert_allclose(a.cell[:], b.cell[:])
        np.testing.assert_allclose(a.get_scaled_positions(), b.get_scaled_positions())


def test_compact_reference_serves_templates_training_and_the_spacegroup_prior(full, tmp_path):
    from ase_unimat.generation.spacegroups import SpacegroupPrior
    from ase_unimat.search.templates import TemplateIndex
    from ase_unimat.training.dataset import UniMatDataset

    out = compact_copy(full, tmp_path / "ref.h5", properties=["spacegroup"])
    for i in range(3):
        a, b = UniMatDataset(out, in_memory=True)[i], UniMatDataset(full, in_memory=True)[i]
        np.testing.assert_array_equal(np.asarray(a["coords"]), np.asarray(b["coords"]))
    assert len(TemplateIndex.from_hdf5(out).candidates({"K": 1, "Br": 1})) >= 1  # NaCl's prototype
    assert SpacegroupPrior.from_hdf5(out).draw({"Na": 1, "Cl": 1}, seed=0)[0] == 225
    with pytest.raises(KeyError, match="no property 'e_above_hull'"):
        compact_copy(full, tmp_path / "bad.h5", properties=["e_above_hull"])
    assert not (tmp_path / "bad.h5").exists()
