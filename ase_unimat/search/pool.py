"""The relaxation pool: the one place relaxations are farmed out, read from and written to a cache.

``RelaxPool(workers=K)`` relaxes on ``K`` local spawned processes (one BLAS/torch thread each),
``RelaxPool(executor=ex)`` on any ``concurrent.futures.Executor`` (a Dask cluster's
``Client.get_executor()``, a thread pool), ``RelaxPool()`` in this process. :meth:`RelaxPool.imap`
yields ``(task, result)`` as relaxations finish, keeping at most ``in_flight`` of them submitted
(so seeds can be made lazily); :meth:`RelaxPool.map` returns the results in task order. With a
``cache`` (:class:`~ase_unimat.search.relax_cache.RelaxCache`), a task whose key is cached is not
relaxed, tasks of one key are relaxed once, and each result is cached as soon as it arrives, so a
killed run loses only the relaxations in flight. The search, the stability code and the
search-efficiency benchmark all relax through this class.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import multiprocessing
from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import Any, Protocol

from ase_unimat.search.calculators import get_calculator
from ase_unimat.search.relax import RelaxResult, RelaxTask, relax, relax_task
from ase_unimat.search.threads import init_worker


class ResultCache(Protocol):
    """What the pool needs of a cache: a key per task, and get / put by key."""

    def key(self, task: RelaxTask) -> str: ...

    def get(self, key: str) -> RelaxResult | None: ...

    def put(self, key: str, result: RelaxResult) -> None: ...


class RelaxPool:
    """Relax :class:`~ase_unimat.search.relax.RelaxTask` s locally, on an executor, or in this process.

    Parameters
    ----------
    workers
        Local spawned worker processes (1 and no ``executor``: relax in this process, building each
        calculator once). With ``executor``, the default ``in_flight`` is ``2 * workers``.
    executor
        Any ``concurrent.futures.Executor``; tasks then carry a calculator spec it can pickle.
    cache
        Optional :class:`ResultCache`; cached results come back with the task's ``id`` and ``source``.
    in_flight
        Most tasks submitted at once (default ``2 * workers``; all of them for a local pool of
        :meth:`map`).
    """

    def __init__(self, *, workers: int = 1, executor: cf.Executor | None = None, cache: ResultCache | None = None,
                 in_flight: int | None = None) -> None:  # fmt: skip
        if isinstance(workers, bool) or int(workers) != workers or workers < 1:
            raise ValueError(f"workers must be a positive integer, got {workers!r}")
        self.workers = int(workers)
        self.executor = executor
        self.cache = cache
        self.in_flight = int(in_flight) if in_flight is not None else 2 * self.workers
        self.from_cache = 0  # tasks answered by the cache
        self.relaxed = 0  # relaxations run
        self._fresh: dict[str, RelaxResult] = {}  # key -> result relaxed by this pool (not counted as cached)

    @property
    def serial(self) -> bool:
        """True when relaxations run in this process."""
        return self.executor is None and self.workers == 1

    def map(self, tasks: Iterable[RelaxTask]) -> list[RelaxResult]:
        """Relax ``tasks`` and return their results in task order."""
        tasks = list(tasks)
        positions: dict[int, list[int]] = {}
        for i, task in enumerate(tasks):
            positions.setdefault(id(task), []).append(i)
        done: dict[int, RelaxResult] = {}
        for task, result in self.imap(tasks):
            done[positions[id(task)].pop(0)] = result
        return [done[i] for i in range(len(tasks))]

    def imap(self, tasks: Iterable[RelaxTask]) -> Iterator[tuple[RelaxTask, RelaxResult]]:
        """Yield ``(task, result)`` for every task, in the order the relaxations finish."""
        if self.serial:
            yield from self._serial(tasks)
            return
        if self.executor is not None:
            yield from self._submit(self.executor, tasks)
            return
        context = multiprocessing.get_context("spawn")
        with cf.ProcessPoolExecutor(max_workers=self.workers, mp_context=context, initializer=init_worker) as pool:
            try:
                yield from self._submit(pool, tasks)
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)  # do not run the queue on after an interrupt
                raise

    # -- internals -------------------------------------------------------------------------------
    def _cached(self, task: RelaxTask) -> tuple[str | None, RelaxResult | None]:
        """The task's cache key and its result when known: relaxed earlier in this pass, or in the cache."""
        if self.cache is None:
            return None, None
        key = self.cache.key(task)
        result = self._fresh.get(key)
        if result is None:
            result = self.cache.get(key)
            if result is None:
                return key, None
            self.from_cache += 1
        return key, replace(result, id=task.id, source=task.source)

    def _store(self, key: str | None, result: RelaxResult) -> None:
        self.relaxed += 1
        if key is not None and self.cache is not None:
            self._fresh[key] = result
            self.cache.put(key, result)

    def _serial(self, tasks: Iterable[RelaxTask]) -> Iterator[tuple[RelaxTask, RelaxResult]]:
        calculators: dict[tuple, Any] = {}  # one calculator per spec object for the whole pass
        for task in tasks:
            key, cached = self._cached(task)
            if cached is not None:
                yield task, cached
                continue
            if isinstance(task.calculator, str):  # named: built once per process (relax_task's cache)
                result = relax_task(task)
            else:  # an object or factory: built once for this pass
                spec = (id(task.calculator), task.calculator_options)
                if spec not in calculators:
                    calculators[spec] = get_calculator(task.calculator, **dict(task.calculator_options))
                result = relax(task.atoms, calculators[spec], task.settings, id=task.id, source=task.source)
            self._store(key, result)
            yield task, result

    def _submit(self, executor: cf.Executor, tasks: Iterable[RelaxTask]) -> Iterator[tuple[RelaxTask, RelaxResult]]:
        pending = iter(tasks)
        running: dict[cf.Future, tuple[str | None, list[RelaxTask]]] = {}
        by_key: dict[str, list[RelaxTask]] = {}  # tasks waiting on a relaxation of the same key
        exhausted = False
        try:
            while True:
                while not exhausted and len(running) < self.in_flight:
                    task = next(pending, None)
                    if task is None:
                        exhausted = True
                        break
                    key, cached = self._cached(task)
                    if cached is not None:
                        yield task, cached
                        continue
                    if key is not None and key in by_key:
                        by_key[key].append(task)
                        continue
                    waiting = [task]
                    if key is not None:
                        by_key[key] = waiting
                    running[executor.submit(relax_task, task)] = (key, waiting)
                if not running:
                    return
                finished, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
                for future in finished:
                    key, waiting = running.pop(future)
                    result = future.result()
                    self._store(key, result)
                    if key is not None:
                        by_key.pop(key, None)
                    yield waiting[0], result
                    for task in waiting[1:]:  # the same structure under another name
                        yield task, replace(result, id=task.id, source=task.source)
        finally:
            for future in running:
                with contextlib.suppress(Exception):
                    future.cancel()
