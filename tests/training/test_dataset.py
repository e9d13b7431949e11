"""UniMatDataset: the torch Dataset over a UniMat HDF5 file."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from dataset_fixtures import N_SLOTS, make_dataset_file

from ase_unimat.core.representation import composition_of, encode, permute_slots
from ase_unimat.training.dataset import UniMatDataset


@pytest.fixture
def dataset_file(tmp_path, rng):
    return make_dataset_file(tmp_path, rng)


@pytest.mark.parametrize("in_memory", [False, True])
def test_items_follow_the_batch_contract(dataset_file, in_memory):
    path, structures, energies = dataset_file
    dataset = UniMatDataset(path, in_memory=in_memory, properties=["energy"])
    assert len(dataset) == 40
    item = dataset[7]
    assert item["coords"].shape == (N_SLOTS, 9, 18, 3) and item["coords"].dtype == torch.float32
    assert item["lattice"].shape == (6,) and item["lattice"].dtype == torch.float32
    assert item["composition"].shape == (9, 18) and item["composition"].dtype == torch.float32
    assert item["natoms"].dtype == torch.int64 and int(item["natoms"]) == len(structures[7])
    assert int(item["index"]) == 7 and float(item["energy"]) == pytest.approx(energies[7])
    coords, _ = encode(structures[7], n_slots=N_SLOTS)
    assert np.array_equal(item["coords"].numpy(), coords)
    assert np.array_equal(item["composition"].numpy(), composition_of(coords))
    assert torch.equal(dataset[-1]["coords"], dataset[39]["coords"])
    with pytest.raises(IndexError, match="out of range"):
        dataset[40]


def test_batched_reads_equal_item_reads(dataset_file):
    dataset = UniMatDataset(dataset_file[0])
    indices = [31, 2, 17, 2]
    batch = dataset[indices]
    items = dataset.__getitems__(indices)
    assert batch["coords"].shape == (4, N_SLOTS, 9, 18, 3)
    for k, i in enumerate(indices):
        single = dataset[i]
        for key in single:
            assert torch.equal(batch[key][k], single[key]) and torch.equal(items[k][key], single[key])


def test_in_memory_equals_lazy(dataset_file):
    lazy, memory = UniMatDataset(dataset_file[0]), UniMatDataset(dataset_file[0], in_memory=True)
    for key, value in lazy[list(range(40))].items():
        assert torch.equal(value, memory[list(range(40))][key])


def test_augmentation_is_seeded_per_item_and_epoch(dataset_file):
    path, structures, _ = dataset_file
    plain = UniMatDataset(path)
    augmented = UniMatDataset(path, augment=True, seed=3)
    i = max(range(40), key=lambda j: np.bincount(structures[j].numbers).max())  # most atoms of one element
    first = augmented[i]["coords"]
    assert torch.equal(first, augmented[[5, i]]["coords"][1])  # independent of the batch it is in
    assert torch.equal(first, UniMatDataset(path, augment=True, seed=3)[i]["coords"])
    augmented.set_epoch(1)
    assert not torch.equal(first, augmented[i]["coords"])
    reference = plain[i]["coords"].numpy()
    canonical = permute_slots(first.numpy(), rng=np.random.default_rng(0))  # same atoms per element
    for coords in (first.numpy(), canonical):
        for cell in zip(*np.nonzero((reference > -1).any(axis=(0, 3))), strict=True):
            a, b = reference[:, cell[0], cell[1]], coords[:, cell[0], cell[1]]
            assert sorted(map(tuple, a)) == sorted(map(tuple, b))


def test_pickles_without_a_handle_and_works_in_dataloader_workers(dataset_file):
    dataset = UniMatDataset(dataset_file[0])
    dataset[0]  # opens this process's handle
    clone = pickle.loads(pickle.dumps(dataset))
    assert torch.equal(clone[3]["coords"], dataset[3]["coords"])
    serial = list(torch.utils.data.DataLoader(dataset, batch_size=8))
    parallel = list(torch.utils.data.DataLoader(dataset, batch_size=8, num_workers=2))
    for a, b in zip(serial, parallel, strict=True):
        assert all(torch.equal(a[k], b[k]) for k in a)
    sampler = torch.utils.data.BatchSampler(torch.utils.data.SequentialSampler(dataset), 8, False)
    batched = list(torch.utils.data.DataLoader(dataset, sampler=sampler, batch_size=None, num_workers=2))
    for a, b in zip(serial, batched, strict=True):
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_unknown_property(dataset_file):
    with pytest.raises(KeyError, match="has no property 'gap'"):
        UniMatDataset(dataset_file[0], properties=["gap"])
