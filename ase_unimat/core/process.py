"""Worker processes that end with their parent: no orphan outlives a ``kill -9`` of the main process.

:func:`die_with_parent` is meant for process-pool initializers. On Linux it asks the kernel for
``SIGKILL`` when the parent dies (``prctl(PR_SET_PDEATHSIG)``); everywhere it also starts a daemon
thread that ends the process once its parent PID changes (the parent died, the child was re-parented).
Standard library only, so a fresh worker runs it before any heavy import.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

#: ``prctl`` option of Linux's ``<sys/prctl.h>``.
PR_SET_PDEATHSIG = 1

#: Seconds between two looks of the watchdog thread at the parent PID.
WATCH_INTERVAL_S = 1.0


def die_with_parent(parent_pid: int | None = None) -> None:
    """End this process when its parent process dies.

    Parameters
    ----------
    parent_pid
        The PID of the parent as the parent saw it (``os.getpid()`` passed through the initializer's
        arguments), which also catches a parent that died before this call; default: the current
        parent.
    """
    expected = os.getppid() if parent_pid is None else int(parent_pid)
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # no libc with prctl: the watchdog alone
            pass
    if os.getppid() != expected:  # the parent is gone already
        os._exit(1)
    threading.Thread(target=_watch, args=(expected,), name="parent-watchdog", daemon=True).start()


def _watch(parent_pid: int) -> None:
    while True:
        time.sleep(WATCH_INTERVAL_S)
        if os.getppid() != parent_pid:
            os._exit(1)


def death_reason(exitcode: int | None) -> str:
    """How a worker process ended, from ``multiprocessing.Process.exitcode``: ``"worker died (signal 11)"``."""
    if exitcode is None:
        return "worker died"
    if exitcode < 0:
        return f"worker died (signal {-exitcode})"
    return f"worker died (exit code {exitcode})"
