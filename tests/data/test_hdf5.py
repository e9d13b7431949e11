"""The HDF5 dataset format (as plain h5py sees it)."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from dataset_fixtures import N_SLOTS, crystals, make_dataset_file

from ase_unimat.core.representation import composition_of, encode
from ase_unimat.data.hdf5 import (
    DatasetFormatError,
    StructureBatch,
    append_batch,
    batch_from_structures,
    create_file,
    dense_coords,
    describe,
    ensure_property,
    open_file,
    read_atoms,
    read_batch,
    sparse_atoms,
    write_structures,
)


@pytest.fixture
def dataset_file(tmp_path, rng):
    return make_dataset_file(tmp_path, rng)


def test_plain_h5py_sees_the_documented_layout(dataset_file):
    path, structures, _ = dataset_file
    with h5py.File(path, "r") as h5:
        assert h5["coords"].shape == (40, N_SLOTS, 9, 18, 3) and h5["coords"].dtype == np.float32
        assert h5["coords"].maxshape[0] is None and h5["coords"].chunks is not None
        assert h5["coords"].compression == "gzip"
        assert h5["lattice"].shape == (40, 6) and h5["composition"].shape == (40, 9, 18)
        assert h5["natoms"].shape == (40,) and h5["material_id"].asstr()[3] == "id-3"
        assert h5["formula"].asstr()[0] == structures[0].get_chemical_formula(mode="hill")
        attrs = dict(h5.attrs)
        assert attrs["format"] == "unimat-hdf5" and attrs["L"] == N_SLOTS and attrs["null_value"] == -1.0
        assert "lanthanides" in attrs["grid_layout"] and "Angstrom" in json.loads(attrs["units"])["lattice"]
        assert attrs["tool_version"] and attrs["n_committed"] == 40
        for i, atoms in enumerate(structures):
            coords, lattice = encode(atoms, n_slots=N_SLOTS)
            assert np.array_equal(h5["coords"][i], coords)
            np.testing.assert_allclose(h5["lattice"][i], lattice, rtol=1e-6)
            assert np.array_equal(h5["composition"][i], composition_of(coords))
            assert h5["natoms"][i] == len(atoms)
        np.testing.assert_allclose(h5["properties/energy"][:], np.linspace(-1, 1, 40))


def test_read_atoms_round_trip(dataset_file):
    path, structures, energies = dataset_file
    decoded = read_atoms(path)
    for atoms, back, energy in zip(structures, decoded, energies, strict=True):
        assert sorted(atoms.numbers) == sorted(back.numbers)
        np.testing.assert_allclose(back.cell.cellpar(), atoms.cell.cellpar(), rtol=1e-5)
        assert back.info["energy"] == pytest.approx(energy)
    assert read_atoms(path, [5])[0].info["material_id"] == "id-5"


def test_sparse_and_dense_views_agree(rng):
    for atoms in crystals(rng, 20):
        coords, _ = encode(atoms, n_slots=N_SLOTS)
        numbers, frac = sparse_atoms(coords)
        assert np.array_equal(dense_coords([len(numbers)], numbers, frac, n_slots=N_SLOTS)[0], coords)
    with pytest.raises(ValueError, match="more than L = 2"):
        dense_coords([3], np.array([8, 8, 8]), np.zeros((3, 3), np.float32), n_slots=2)


def test_append_and_property_columns(tmp_path, rng):
    path = tmp_path / "grow.h5"
    first = batch_from_structures(crystals(rng, 3), n_slots=N_SLOTS, properties={"e": [1.0, 2.0, 3.0]})
    second = batch_from_structures(crystals(rng, 2), n_slots=N_SLOTS)
    with create_file(path, n_slots=N_SLOTS) as h5:
        ensure_property(h5, "e", integer=False)
        append_batch(h5, first)
        append_batch(h5, second)
        ensure_property(h5, "spacegroup", integer=True)
        with pytest.raises(DatasetFormatError, match="no column"):
            append_batch(h5, batch_from_structures(crystals(rng, 1), n_slots=N_SLOTS, properties={"x": [0.0]}))
    with open_file(path) as h5:
        assert len(h5["natoms"]) == 5 == h5.attrs["n_committed"]
        np.testing.assert_array_equal(h5["properties/e"][:3], [1, 2, 3])
        assert np.isnan(h5["properties/e"][3:]).all()
        assert h5["properties/spacegroup"].dtype == np.int64 and (h5["properties/spacegroup"][:] == -1).all()
        batch = read_batch(h5, 1, 4)
    assert isinstance(batch, StructureBatch) and len(batch) == 3 and len(batch.numbers) == batch.natoms.sum()


def test_bytes_per_structure_on_mp20(tmp_path, shared_data):
    from ase_unimat.data.readers import iter_raw, parse_cif

    structures = [parse_cif(raw.payload) for raw, _ in zip(iter_raw(shared_data / "mp_20/train.csv.gz"), range(512),
                                                           strict=False)]
    path = tmp_path / "mp20.h5"
    write_structures(path, structures, n_slots=20)
    with h5py.File(path, "r") as h5:
        stored = sum(ds.id.get_storage_size() for ds in _datasets(h5))
    assert stored / len(structures) < 1000  # bytes of data per structure (the target is <= 1 KB)


def _datasets(group):
    for item in group.values():
        if isinstance(item, h5py.Dataset):
            yield item
        else:
            yield from _datasets(item)


def test_open_file_rejects_other_files(tmp_path):
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as h5:
        h5["x"] = 1
    with pytest.raises(DatasetFormatError, match="is not a unimat-hdf5 file"):
        open_file(other)
    with pytest.raises(FileNotFoundError):
        open_file(tmp_path / "missing.h5")
    with pytest.raises(ValueError, match="2 material ids for 1 structures"):
        batch_from_structures(crystals(np.random.default_rng(0), 1), material_ids=["a", "b"])


def test_describe(dataset_file):
    text = describe(dataset_file[0])
    assert "40 structures, L = 6" in text and "atoms per cell" in text and "property energy" in text


# ------------------------------------------------------------------------------------------ torch dataset
