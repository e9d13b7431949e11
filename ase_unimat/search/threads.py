"""One BLAS/OpenMP/torch thread per relaxation (STYLE.md trap: FrechetCellFilter and 2 OpenBLAS threads).

This module imports nothing heavy, so a fresh worker process can run :func:`init_worker` before
numpy, torch or scipy load their thread pools.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def init_worker() -> None:
    """Process-pool initializer: one thread for BLAS, OpenMP and torch in this worker process."""
    for name in THREAD_VARIABLES:
        os.environ[name] = "1"

    if "torch" in sys.modules:  # already imported (fork start method): set it directly
        sys.modules["torch"].set_num_threads(1)


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
