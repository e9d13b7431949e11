"""One BLAS/OpenMP/torch thread per relaxation (STYLE.md trap: FrechetCellFilter and 2 OpenBLAS threads).

This module imports nothing heavy, so a fresh worker process can run :func:`init_worker` before
numpy, torch or scipy load their thread pools.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any

from ase_unimat.core.process import die_with_parent

THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


#: Where this worker announces the task it starts (set by :func:`init_worker`).
_started: Any = None


def init_worker(parent_pid: int | None = None, started: Any = None) -> None:
    """Process-pool initializer: one thread for BLAS, OpenMP and torch in this worker process.

    Parameters
    ----------
    parent_pid
        With it, the worker ends when that parent process dies (:func:`~ase_unimat.core.process.die_with_parent`).
    started
        A ``multiprocessing`` queue that :func:`announce` puts ``(pid, token)`` on.
    """
    global _started
    for name in THREAD_VARIABLES:
        os.environ[name] = "1"
    if parent_pid is not None:
        die_with_parent(parent_pid)
    _started = started

    if "torch" in sys.modules:  # already imported (fork start method): set it directly
        sys.modules["torch"].set_num_threads(1)


def announce(token: int) -> None:
    """Tell the parent (through the queue given to :func:`init_worker`) that this worker starts ``token``."""
    if _started is not None:
        _started.put((os.getpid(), token))


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Limit BLAS/OpenMP pools to one thread inside the block (threadpoolctl when installed)."""
    try:
        from threadpoolctl import threadpool_limits  # optional
    except ImportError:  # the environment variables set by init_worker / the caller then apply
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield
