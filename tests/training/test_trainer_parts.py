"""The trainer's pure parts: LR schedule, epoch order, augmentation, noise seeds, settings, compositions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from trainer_fixtures import tiny_config

from ase_unimat.core.representation import composition_of
from ase_unimat.model.config import TrainConfig
from ase_unimat.training.data_order import EpochBatchSampler, EpochKeyedDataset, epoch_permutation
from ase_unimat.training.dataset import UniMatDataset
from ase_unimat.training.loaders import dataset_compositions
from ase_unimat.training.noise_seed import step_seed
from ase_unimat.training.optim import warmup_cosine


def test_warmup_then_cosine_to_floor():
    lrs = [warmup_cosine(s, warmup_steps=4, max_steps=20, min_ratio=0.1) for s in range(25)]
    assert lrs[:4] == [0.25, 0.5, 0.75, 1.0]
    assert lrs[4] == pytest.approx(1.0)
    assert all(later <= earlier + 1e-12 for earlier, later in zip(lrs[4:], lrs[5:], strict=False))
    assert lrs[20] == pytest.approx(0.1) and lrs[24] == pytest.approx(0.1)
    assert lrs[12] == pytest.approx(0.55)  # half way down the cosine


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_epoch_batches_cover_each_sample_once_and_ranks_are_disjoint(world_size):
    samplers = [EpochBatchSampler(23, batch_size=3, seed=5, rank=r, world_size=world_size) for r in range(world_size)]
    for sampler in samplers:
        sampler.set_epoch(2)
    per_rank = [[key for batch in sampler for key in batch] for sampler in samplers]
    seen = [index for keys in per_rank for _, index in keys]
    steps = 23 // (3 * world_size)
    assert all(len(list(sampler)) == steps == len(sampler) for sampler in samplers)
    assert len(seen) == len(set(seen)) == steps * 3 * world_size
    assert {epoch for keys in per_rank for epoch, _ in keys} == {2}
    assert set(seen) <= set(range(23))


def test_epoch_order_is_seeded_per_epoch_and_resumes_mid_epoch():
    sampler = EpochBatchSampler(20, batch_size=4, seed=0)
    full = list(sampler)
    sampler.set_epoch(1)
    assert list(sampler) != [[(1, i) for _, i in batch] for batch in full]  # a new order each epoch
    sampler.set_epoch(0, position=8)
    assert list(sampler) == full[2:] and len(sampler) == 3
    assert np.array_equal(epoch_permutation(20, seed=0, epoch=0), [i for batch in full for _, i in batch])
    with pytest.raises(ValueError, match="multiple of the global batch"):
        sampler.set_epoch(0, position=6)
    with pytest.raises(ValueError, match="fewer than one global batch"):
        EpochBatchSampler(5, batch_size=3, seed=0, world_size=2)


def test_augmentation_is_seeded_by_epoch_and_index_and_keeps_composition(data):
    base = UniMatDataset(data["train"], in_memory=True)
    keyed = EpochKeyedDataset(base, seed=3, augment=True)
    a, again = keyed[(0, 2)], keyed[(0, 2)]  # item 2: four Cu atoms, 24 orders
    assert torch.equal(a["coords"], again["coords"])
    assert not all(torch.equal(a["coords"], keyed[(epoch, 2)]["coords"]) for epoch in range(1, 6))
    assert np.array_equal(composition_of(a["coords"].numpy()), composition_of(base[2]["coords"].numpy()))
    batch = keyed.__getitems__([(0, 2), (3, 5)])  # the batched read path gives the same items
    assert torch.equal(batch[0]["coords"], a["coords"]) and torch.equal(batch[1]["coords"], keyed[(3, 5)]["coords"])
    plain_item = EpochKeyedDataset(base, seed=3, augment=False)[(1, 2)]
    assert torch.equal(plain_item["coords"], base[2]["coords"])


def test_step_seeds_differ_by_step_rank_and_stream():
    seeds = {step_seed(0, s, r) for s in range(50) for r in range(4)}
    assert len(seeds) == 200 and all(0 <= s < 2**63 for s in seeds)
    assert step_seed(0, 0, 0, stream=1) not in seeds


def test_train_config_overrides_are_checked_and_keep_the_defaults(data):
    train = tiny_config(data).train
    options = train.with_overrides(total_steps=30, keep_every=5, init_from=None)
    assert options.total_steps == 30 and options.keep_every == 5 and options.batch_size == 4
    assert options.train_files == (str(data["train"]),) and options.val_data == str(data["val"])
    assert options.min_lr_ratio == TrainConfig().min_lr_ratio and options.init_from == ""
    assert train.total_steps != 30  # a copy: the config itself is unchanged
    two = train.with_overrides(train_data=[data["train"], data["train"]])
    assert two.train_files == (str(data["train"]),) * 2
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        train.with_overrides(batch_size=0)
    with pytest.raises(ValueError, match="no training data"):
        train.with_overrides(train_data="")
    with pytest.raises(ValueError, match="ema_decay"):
        train.with_overrides(ema_decay=1.0)
    with pytest.raises(ValueError, match="must be an integer"):
        train.with_overrides(keep_every="5")
    with pytest.raises(ValueError, match="unknown training option"):
        train.with_overrides(epochs=3)


def test_dataset_compositions_match_the_items(data):
    base = UniMatDataset(data["train"], in_memory=True)
    compositions = dataset_compositions(base)  # (N, 9, 18), read from the file
    assert compositions.shape == (18, 9, 18)
    assert torch.equal(compositions.float(), torch.stack([base[i]["composition"] for i in range(18)]))



@pytest.mark.parametrize(("num_threads", "env", "expected"), [(0, "1", 1), (0, "3", 3), (2, "1", 2), (0, "", None)])
def test_threads_follow_config_then_omp_num_threads(monkeypatch, num_threads, env, expected):
    import os
    from types import SimpleNamespace

    from ase_unimat.training.trainer import _set_threads

    monkeypatch.setenv("OMP_NUM_THREADS", env)
    before = torch.get_num_threads()
    procs = SimpleNamespace(device=torch.device("cpu"), local_world_size=1)
    try:
        _set_threads(TrainConfig(num_threads=num_threads), procs)
        assert torch.get_num_threads() == (expected or max(1, os.cpu_count() or 1))
    finally:
        torch.set_num_threads(before)
