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

A local worker that dies (segfault, ``os._exit``, OOM kill) fails only the task it held: the pool
is rebuilt, the other tasks in flight are submitted again, and the task is tried once more; a task
whose worker died twice comes back failed with the reason, e.g. ``worker died (signal 11)``. Each
worker announces the task it starts, so the parent knows which task a dead worker held. Workers end
with their parent (:func:`~ase_unimat.core.process.die_with_parent`).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import math
import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from typing import Any, Protocol

from ase_unimat.core.process import death_reason
from ase_unimat.search.calculators import get_calculator
from ase_unimat.search.relax import RelaxResult, RelaxTask, _json_safe, relax, relax_task
from ase_unimat.search.threads import announce, init_worker

#: A task is tried this often on a fresh worker before its worker's death is its result.
MAX_WORKER_DEATHS = 2


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
            executor = self.executor
            yield from self._submit(lambda task, token: executor.submit(relax_task, task), tasks)
            return
        local = _LocalProcesses(self.workers)
        try:
            yield from self._submit(local.submit, tasks, local=local)
        except BaseException:
            local.shutdown(wait=False)  # do not run the queue on after an interrupt
            raise
        local.shutdown(wait=True)

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

    def _submit(self, submit: Callable[[RelaxTask, int], cf.Future], tasks: Iterable[RelaxTask], *,
                local: _LocalProcesses | None = None) -> Iterator[tuple[RelaxTask, RelaxResult]]:  # fmt: skip
        pending = iter(tasks)
        running: dict[cf.Future, tuple[str | None, list[RelaxTask], int]] = {}  # future -> key, tasks, token
        by_key: dict[str, list[RelaxTask]] = {}  # tasks waiting on a relaxation of the same key
        deaths: dict[int, int] = {}  # id(task) -> how often a worker died running it
        again: list[tuple[str | None, list[RelaxTask]]] = []  # in flight when the local pool broke
        tokens = iter(range(1 << 62))
        exhausted = False
        try:
            while True:
                while again:
                    key, waiting = again.pop(0)
                    token = next(tokens)
                    running[submit(waiting[0], token)] = (key, waiting, token)
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
                    token = next(tokens)
                    running[submit(task, token)] = (key, waiting, token)
                if not running:
                    return
                finished, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
                if local is not None and any(isinstance(f.exception(), BrokenProcessPool) for f in finished):
                    cf.wait(running)  # a broken pool fails all its futures at once
                    finished = set(running)
                    died = local.deaths()
                broken: list[tuple[str | None, list[RelaxTask], int]] = []
                for future in finished:
                    key, waiting, token = running.pop(future)
                    if local is not None and isinstance(future.exception(), BrokenProcessPool):
                        broken.append((key, waiting, token))
                        continue
                    result = future.result()
                    yield from self._deliver(key, waiting, result, by_key)
                if broken:
                    local.rebuild()  # type: ignore[union-attr]
                    for key, waiting, token in broken:
                        reason = died.get(token)
                        if reason is not None:
                            deaths[id(waiting[0])] = deaths.get(id(waiting[0]), 0) + 1
                        if reason is not None and deaths[id(waiting[0])] >= MAX_WORKER_DEATHS:
                            yield from self._deliver(key, waiting, _worker_died(waiting[0], reason), by_key)
                        else:
                            again.append((key, waiting))
        finally:
            for future in running:
                with contextlib.suppress(Exception):
                    future.cancel()

    def _deliver(self, key: str | None, waiting: list[RelaxTask], result: RelaxResult,
                 by_key: dict[str, list[RelaxTask]]) -> Iterator[tuple[RelaxTask, RelaxResult]]:  # fmt: skip
        self._store(key, result)
        if key is not None:
            by_key.pop(key, None)
        yield waiting[0], result
        for task in waiting[1:]:  # the same structure under another name
            yield task, replace(result, id=task.id, source=task.source)


class _LocalProcesses:
    """Spawned worker processes, rebuilt when one dies; each announces the task it starts.

    Parameters
    ----------
    workers
        Number of worker processes.
    """

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.context = multiprocessing.get_context("spawn")
        self.started = self.context.SimpleQueue()  # (worker pid, token) as each task starts
        self.processes: dict[int, Any] = {}  # pid -> multiprocessing.Process of the current pool
        self.executor = self._new()

    def _new(self) -> cf.ProcessPoolExecutor:
        return cf.ProcessPoolExecutor(max_workers=self.workers, mp_context=self.context, initializer=init_worker,
                                      initargs=(os.getpid(), self.started))  # fmt: skip

    def submit(self, task: RelaxTask, token: int) -> cf.Future:
        """Submit ``task`` under ``token`` (what its worker announces)."""
        future = self.executor.submit(_relax_announced, task, token)
        self.processes.update(getattr(self.executor, "_processes", None) or {})  # the workers, to read exit codes
        return future

    def deaths(self) -> dict[int, str]:
        """After the pool broke: ``token -> reason`` for the tasks whose worker died under them."""
        deadline = time.monotonic() + 10.0
        while any(p.exitcode is None for p in self.processes.values()) and time.monotonic() < deadline:
            time.sleep(0.05)  # the executor terminates the surviving workers
        running_on: dict[int, int] = {}
        while not self.started.empty():
            pid, token = self.started.get()
            running_on[pid] = token  # the last task each worker started
        died = {pid: p.exitcode for pid, p in self.processes.items() if p.exitcode not in (None, 0)}
        first = {pid: code for pid, code in died.items() if code != -signal.SIGTERM}  # others were terminated
        return {running_on[pid]: death_reason(code) for pid, code in (first or died).items() if pid in running_on}

    def rebuild(self) -> None:
        """A fresh pool in place of a broken one."""
        self.executor.shutdown(wait=True, cancel_futures=True)
        self.processes.clear()
        while not self.started.empty():
            self.started.get()
        self.executor = self._new()

    def shutdown(self, *, wait: bool) -> None:
        """Shut the pool down (queued tasks cancelled)."""
        self.executor.shutdown(wait=wait, cancel_futures=True)


def _relax_announced(task: RelaxTask, token: int) -> RelaxResult:
    """Worker side: announce ``token``, then relax."""
    announce(token)
    return relax_task(task)


def _worker_died(task: RelaxTask, reason: str) -> RelaxResult:
    """The failed result of a task whose worker process died while running it."""
    atoms = task.atoms.copy()
    nan = math.nan
    return RelaxResult(
        id=task.id, source=task.source, status="failed", reason=reason, atoms=atoms, energy=nan, enthalpy=nan,
        volume=float(abs(atoms.cell.volume)), pressure=float(task.settings.pressure), steps=0, converged=False,
        wall_time=0.0, seed_info=_json_safe(task.atoms.info),
    )  # fmt: skip
