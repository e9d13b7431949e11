"""The search-efficiency benchmark's relaxations: every job of a run relaxed through the library's pool and cache.

It owns :func:`relax_cache` (the on-disk relaxation cache a configuration asks for, or none) and
:func:`relax_all`, which relaxes ``(job key, structure)`` jobs on the configured workers, reading
and filling the cache, and returns the results with how many came from the cache
(:class:`Relaxations`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ase_unimat.search.relax_cache import RelaxCache
from bench._search_efficiency_config import DEFAULT_CACHE_DIR, BenchConfig


def relax_cache(config: BenchConfig) -> RelaxCache | None:
    """The cache ``config`` asks for (``cache_dir`` None: ``DEFAULT_CACHE_DIR``), or ``None`` for ``""`` (off)."""
    if config.cache_dir == "":
        return None
    return RelaxCache(Path(config.cache_dir) if config.cache_dir is not None else DEFAULT_CACHE_DIR)


@dataclass
class Relaxations:
    """What :func:`relax_all` returns: job key -> ``RelaxResult``, and where the results came from.

    ``from_cache`` jobs were read from the cache; ``relaxed`` structures were relaxed now (jobs
    holding the same structure share one relaxation, so ``from_cache + relaxed <= len(results)``).
    """

    results: dict[str, Any]
    from_cache: int
    relaxed: int


def _job_source(job: str) -> str:
    """The source part of a job key ``<material id>/<source>/<index>``."""
    parts = job.split("/")
    return parts[1] if len(parts) == 3 else job


def relax_all(jobs: Sequence[tuple[str, Any]], config: BenchConfig, say: Callable[[str], None]) -> Relaxations:
    """Relax ``(key, atoms)`` jobs on ``config.workers`` processes through the library's ``RelaxPool``.

    The pool reads and fills the cache (each result is written as soon as its relaxation finishes,
    so a killed run loses only the relaxations in flight) and relaxes one structure held by several
    jobs once. Cached results get the current job's key as ``id`` and its source as ``source``.
    """
    from ase_unimat.search.pool import RelaxPool
    from ase_unimat.search.relax import RelaxSettings, RelaxTask

    settings = RelaxSettings(fmax=config.fmax, max_steps=config.max_steps, time_limit=config.time_limit)
    cache = relax_cache(config)
    threads = (("threads", 1),) if config.calculator in ("chgnet", "sevenn") else ()  # emt takes no options
    tasks = [RelaxTask(id=key, source=_job_source(key), atoms=atoms, calculator=config.calculator,
                       calculator_options=threads, settings=settings) for key, atoms in jobs]  # fmt: skip
    pool = RelaxPool(workers=config.workers, cache=cache, in_flight=max(1, len(tasks)))
    results: dict[str, Any] = {}
    start, said = time.perf_counter(), 0
    for task, result in pool.imap(tasks):
        results[task.id] = result
        if pool.relaxed >= said + 10:
            said = pool.relaxed
            say(f"  {said} relaxations, {time.perf_counter() - start:.0f} s")
    if cache is not None:
        say(f"  {pool.from_cache}/{len(jobs)} relaxations from the cache {cache.root}")
    return Relaxations(results={key: results[key] for key, _ in jobs}, from_cache=pool.from_cache,
                       relaxed=pool.relaxed)  # fmt: skip
