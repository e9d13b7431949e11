"""The relaxation pool: in this process, on any executor, with a cache (EMT, tiny cells)."""

from __future__ import annotations

import concurrent.futures as cf
from contextlib import nullcontext

import pytest
from ase.build import bulk

from ase_unimat.search.pool import RelaxPool
from ase_unimat.search.relax import RelaxSettings, RelaxTask
from ase_unimat.search.relax_cache import RelaxCache

SETTINGS = RelaxSettings(max_steps=30)


def tasks():
    cu, al = bulk("Cu", "fcc", a=3.7), bulk("Al", "fcc", a=4.1)
    return [RelaxTask(id=f"t{i}", source="test", atoms=a, calculator="emt", settings=SETTINGS)
            for i, a in enumerate([cu, al, cu.copy()])]  # fmt: skip


@pytest.mark.parametrize("executor", [None, "threads"])
def test_map_returns_results_in_task_order(executor):
    with cf.ThreadPoolExecutor(2) if executor else nullcontext() as ex:
        results = RelaxPool(workers=2 if ex else 1, executor=ex).map(tasks())
    assert [r.id for r in results] == ["t0", "t1", "t2"]
    assert all(r.ok for r in results)
    assert results[0].energy == pytest.approx(results[2].energy)


def test_cache_relaxes_one_structure_once_and_serves_a_second_pass(tmp_path):
    cache = RelaxCache(tmp_path)
    first = RelaxPool(cache=cache)
    results = first.map(tasks())
    assert (first.from_cache, first.relaxed) == (0, 2) and results[2].id == "t2"
    with cf.ThreadPoolExecutor(2) as ex:
        second = RelaxPool(workers=2, executor=ex, cache=cache)
        again = second.map(tasks())
    assert (second.from_cache, second.relaxed) == (3, 0)
    assert [r.energy for r in again] == [r.energy for r in results]

