"""ase_unimat.data.subset: a seeded random subset keeps whole structures, their properties and order."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from ase.build import bulk

from ase_unimat.data.hdf5 import describe, history, open_file, read_atoms, write_structures
from ase_unimat.data.subset import random_subset


@pytest.fixture
def full(tmp_path):
    structures = [bulk("NaCl", "rocksalt", a=5.6), bulk("Si", "diamond", a=5.43), bulk("Cu", "fcc", a=3.6) * (2, 1, 1),
                  bulk("MgO", "rocksalt", a=4.2) * (1, 1, 2), bulk("Fe", "bcc", a=2.87), bulk("GaAs", "zincblende", a=5.65)]
    for i, atoms in enumerate(structures):
        atoms.rattle(0.01, seed=i)
    path = tmp_path / "full.h5"
    write_structures(path, structures, material_ids=[f"x-{i}" for i in range(6)], properties={"band_gap": [5.0, 1.1, 0.0, 7.8, 0.0, 1.4]})
    return path


def test_subset_holds_the_drawn_rows_in_source_order(full, tmp_path):
    out = random_subset(full, tmp_path / "sub.h5", size=3, seed=1)
    source, subset = read_atoms(full), read_atoms(out)
    ids = [a.info["material_id"] for a in subset]
    assert len(subset) == 3 and ids == sorted(ids)
    by_id = {a.info["material_id"]: a for a in source}
    for atoms in subset:
        twin = by_id[atoms.info["material_id"]]
        assert atoms.get_chemical_formula() == twin.get_chemical_formula()
        np.testing.assert_allclose(atoms.cell[:], twin.cell[:], atol=1e-5)
        np.testing.assert_allclose(atoms.get_scaled_positions(), twin.get_scaled_positions(), atol=1e-6)
    with h5py.File(out) as h5, h5py.File(full) as h5_full:
        rows = [int(i.split("-")[1]) for i in ids]
        np.testing.assert_array_equal(h5["coords"][:], h5_full["coords"][rows])  # the dense tensors too
        np.testing.assert_array_equal(h5["properties/band_gap"][:], h5_full["properties/band_gap"][rows])
        assert int(h5.attrs["n_committed"]) == 3


def test_subset_is_seeded_and_records_its_origin(full, tmp_path):
    a = read_atoms(random_subset(full, tmp_path / "a.h5", size=4, seed=3))
    b = read_atoms(random_subset(full, tmp_path / "b.h5", size=4, seed=3))
    c = read_atoms(random_subset(full, tmp_path / "c.h5", size=4, seed=4))
    names = lambda atoms: [x.info["material_id"] for x in atoms]  # noqa: E731
    assert names(a) == names(b) and names(a) != names(c)
    with open_file(tmp_path / "a.h5") as h5:
        entry = history(h5)[-1]
    assert entry["subset_of"] == str(full) and entry["size"] == 4 and entry["seed"] == 3
    assert "subset" in describe(tmp_path / "a.h5") and "4 structures of" in describe(tmp_path / "a.h5")


@pytest.mark.parametrize("size", [0, 7])
def test_subset_size_must_fit_the_source(full, tmp_path, size):
    with pytest.raises(ValueError, match="holds 6"):
        random_subset(full, tmp_path / "sub.h5", size=size)
    assert not (tmp_path / "sub.h5").exists()


def test_whole_file_subset_trains_like_the_source(full, tmp_path):
    from ase_unimat.training.dataset import UniMatDataset

    out = random_subset(full, tmp_path / "all.h5", size=6)
    a, b = UniMatDataset(str(full)), UniMatDataset(str(out))
    batch_a, batch_b = a.batch([0, 5]), b.batch([0, 5])
    for key in batch_a:
        np.testing.assert_array_equal(np.asarray(batch_a[key]), np.asarray(batch_b[key]))
