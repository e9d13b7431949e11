"""One ``pw.x`` kept running through a relaxation: ASE's ``SocketIOCalculator`` over the i-PI protocol.

:class:`PwServer` starts ``pw.x -in espresso.pwi --ipi NAME:UNIX`` for one structure and sends it
each new cell and positions; pw.x keeps its G-vectors, charge density and wavefunctions between
steps, so a step costs an SCF from a good start instead of a start-up and an SCF from scratch. It
returns energy, forces and stress (the virial over the volume). The input is written once, with
``calculation = 'vc-relax'``: pw.x in driver mode only reads positions from the socket, but
``vc-relax`` is what makes it read ``&CELL`` and size its tables for a changing cell (with ``'scf'``,
``cell_factor`` is 1 and the first contraction stops pw.x in ``scale_h``). pw.x is started by
:meth:`PwServer._launch`, not ASE 3.29's ``FileIOSocketClientLauncher``, whose Espresso command line
lacks the ``pw.x`` itself and which opens the output file in the current directory.

pw.x keeps the plane-wave set of the cell it started on (a fixed number of plane waves, as in a QE
``vc-relax``), so its energy drifts from a fresh calculation as the cell strains (Si2 at 25 Ry:
about 0.8 meV and 1e-4 eV/Å³ at 1 % strain; at 12 Ry already 5 meV at 0.4 %). :meth:`PwServer.fits`
says when a cell has strained more than :data:`MAX_STRAIN` from the start, or needs another k-point grid; the caller then starts
a fresh pw.x on it. While the optimizer still takes large cell steps (BFGS on a random cell: 5-15 %
strain a step), more strain is allowed (up to :data:`STEP_FACTOR` times the last step's, at most
:data:`MAX_STRAIN_FAR`) and the k-point grid is kept, so that the steps near convergence, and the
energy a relaxation ends with, come from a basis within :data:`MAX_STRAIN` of a fresh one on the
grid a fresh calculation would use.

Faults become :class:`~ase_unimat.search.calc_errors.CalculatorError` with pw.x's own reason (the
error block or ``convergence NOT achieved`` from its output): a pw.x that exits or is killed, an SCF
that does not converge (pw.x stops), no answer within ``timeout`` seconds (pw.x is killed). pw.x is
stopped by :meth:`PwServer.close` (the caller's ``finally``), at interpreter exit, and by the kernel
when the thread that started it dies (``PR_SET_PDEATHSIG`` on Linux: a killed worker leaves no pw.x
behind). The UNIX socket lives at ``/tmp/ipi_<name>`` (ASE and pw.x both add that prefix; short, as
socket paths must be under ~100 characters); files left by a killed process are swept by the next server.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from ase.calculators.socketio import SocketIOCalculator
from ase.io.espresso import kspacing_to_grid

from ase_unimat.search.calc_errors import CalculatorError

#: Where ASE's SocketServer and pw.x put a UNIX socket named ``NAME`` (``/tmp/ipi_NAME``).
SOCKET_PREFIX = "/tmp/ipi_"

#: Strain of the cell from where pw.x started (largest principal strain) that one pw.x always serves ...
MAX_STRAIN = 0.002
#: ... more while the optimizer still takes large cell steps: up to STEP_FACTOR times the last step's strain ...
STEP_FACTOR = 5.0
#: ... and never more than this (pw.x itself rebuilds its G-vectors past a 10 % volume change).
MAX_STRAIN_FAR = 0.1

#: Seconds pw.x may take to answer one step (and to start) before it is killed: the default ``socket_timeout``.
DEFAULT_TIMEOUT_S = 1800.0

#: Seconds a stopped pw.x gets to exit after SIGTERM before SIGKILL.
_TERM_GRACE_S = 2.0

_PR_SET_PDEATHSIG = 1
_NAME_PREFIX = "unimat-"
_live: set[PwServer] = set()  # servers whose pw.x may run: stopped at interpreter exit


class PwServer:
    """One pw.x in i-PI driver mode for one structure (same atoms, a cell that strains little).

    Parameters
    ----------
    espresso
        The ASE ``Espresso`` calculator whose input pw.x reads (``calculation='vc-relax'``).
    atoms
        The structure pw.x starts on.
    command
        The pw.x command line (``["pw.x"]``, or ``["mpirun", "-np", "2", "pw.x"]``).
    timeout
        Seconds one step (or the start, up to the first answer) may take.
    kspacing
        With a k-point spacing, a cell whose grid differs from the start's does not fit.
    """

    def __init__(self, espresso: Any, atoms: Any, *, command: list[str], timeout: float = DEFAULT_TIMEOUT_S,
                 kspacing: float | None = None) -> None:  # fmt: skip
        self.espresso = espresso
        self.directory = Path(espresso.directory)
        self.command = list(command)
        self.timeout = float(timeout)
        self.kspacing = kspacing
        self.start_atoms = atoms.copy()
        self.last_cell = atoms.cell.array.copy()  # the cell of the last step sent
        self.kgrid = None if kspacing is None else list(kspacing_to_grid(atoms, kspacing))
        self.name = f"{_NAME_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        self.proc: subprocess.Popen | None = None
        self.steps = 0
        self._expired = False
        _sweep_stale_sockets()
        self.socketio = SocketIOCalculator(launch_client=self._launch, unixsocket=self.name, timeout=self.timeout)
        _live.add(self)

    @property
    def socket_path(self) -> str:
        return SOCKET_PREFIX + self.name

    @property
    def output(self) -> Path:
        return self.directory / self.espresso.template.outputname

    def fits(self, atoms: Any) -> bool:
        """True when ``atoms`` is this server's structure with a cell close enough to its start."""
        start = self.start_atoms
        if len(atoms) != len(start) or (atoms.numbers != start.numbers).any() or (atoms.pbc != start.pbc).any():
            return False
        step = cell_strain(self.last_cell, atoms.cell.array)
        allowed = min(max(MAX_STRAIN, STEP_FACTOR * step), MAX_STRAIN_FAR)
        if cell_strain(start.cell.array, atoms.cell.array) > allowed:
            return False
        settling = STEP_FACTOR * step <= MAX_STRAIN  # small steps: the grid must be the one FileIO would use
        return not (settling and self.kgrid is not None and list(kspacing_to_grid(atoms, self.kspacing)) != self.kgrid)

    def calculate(self, atoms: Any) -> dict[str, Any]:
        """Energy, free energy, forces and stress of ``atoms`` (its cell and positions sent to pw.x)."""
        start = self.start_atoms
        if len(atoms) != len(start) or (atoms.numbers != start.numbers).any():
            raise CalculatorError("pw.x socket: another structure than the one this pw.x was started on")
        watchdog = threading.Timer(self.timeout, self._expire)
        watchdog.daemon = True
        watchdog.start()
        try:
            self.socketio.calculate(atoms, ["energy", "forces", "stress"], ["positions", "cell"])
        except (OSError, AssertionError, EOFError) as err:  # socket closed or timed out, pw.x gone, a bad message
            raise CalculatorError(self._failure(err)) from None
        finally:
            watchdog.cancel()
        self.steps += 1
        self.last_cell = atoms.cell.array.copy()
        results = {k: np.array(v, copy=True) if isinstance(v, np.ndarray) else v
                   for k, v in self.socketio.results.items()}  # fmt: skip
        return {k: results[k] for k in ("energy", "free_energy", "forces", "stress") if k in results}

    def close(self) -> None:
        """Stop pw.x (SIGTERM, then SIGKILL) and remove the socket file; safe to call twice."""
        _live.discard(self)
        self._kill()
        with warnings.catch_warnings():  # ASE warns that pw.x exited non-zero: it was stopped on purpose
            warnings.simplefilter("ignore")
            with contextlib.suppress(Exception):
                self.socketio.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)

    # -- internals -------------------------------------------------------------------------------
    def _launch(self, atoms: Any, properties: Any = None, port: Any = None, unixsocket: str | None = None) -> Any:
        """ASE's launch_client: write the input once and start pw.x in driver mode."""
        self.espresso.write_inputfiles(atoms, properties or ["energy", "forces", "stress"])
        argv = [*self.command, "-in", self.espresso.template.inputname, "--ipi", f"{unixsocket}:UNIX"]
        with open(self.output, "wb") as out:
            self.proc = subprocess.Popen(argv, cwd=self.directory, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, preexec_fn=_die_with_parent(os.getpid()))  # fmt: skip
        return self.proc

    def _expire(self) -> None:
        """Watchdog: no answer within the timeout (also before pw.x connected): kill pw.x."""
        self._expired = True
        self._kill(grace=0.0)

    def _kill(self, grace: float = _TERM_GRACE_S) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10.0)

    def _failure(self, err: BaseException) -> str:
        """One line: why this step failed, with pw.x's own reason when it printed one."""
        timed_out = self._expired or isinstance(err, socket.timeout | TimeoutError)
        self._kill(grace=0.0 if timed_out else 5.0)  # an exiting pw.x may still be writing its reason
        code = None if self.proc is None else self.proc.poll()
        if timed_out:
            what = f"no answer from pw.x within {self.timeout:g} s (socket timeout; pw.x killed)"
        elif code is not None:
            what = f"pw.x exited with status {code} during step {self.steps + 1}"
        else:
            what = f"pw.x socket failed during step {self.steps + 1} ({type(err).__name__}: {err})"
        reason = pw_reason(self.output)
        return f"{what}: {reason}" if reason else what


def cell_strain(cell0: Any, cell: Any) -> float:
    """Largest principal strain of ``cell`` relative to ``cell0`` (rows are lattice vectors)."""
    deformation = np.linalg.solve(np.asarray(cell0, dtype=float), np.asarray(cell, dtype=float))  # cell0 @ F = cell
    return float(np.linalg.norm(deformation - np.eye(3), ord=2))


def pw_reason(output: Path, *, limit: int = 200) -> str:
    """pw.x's reason for stopping, from its output file: its error block, or the convergence failure."""
    try:
        lines = [line.strip() for line in output.read_text(errors="replace").splitlines()]
    except OSError:
        return ""
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith("Error in routine"):
            message = next((m for m in lines[i + 1 :] if m and not m.startswith("%")), "")
            return " ".join(f"{lines[i]} {message}".split())[:limit]
    for line in reversed(lines):
        if "convergence NOT achieved" in line:
            return " ".join(line.split())[:limit]
    return ""


def _die_with_parent(parent: int) -> Any:
    """preexec_fn: the child gets SIGKILL when the thread that started it dies (Linux), not an orphan."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def arm() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the request took effect
            os._exit(1)

    return arm


def _sweep_stale_sockets() -> None:
    """Remove socket files that servers of processes no longer alive left behind (``kill -9``)."""
    folder, stem = os.path.split(SOCKET_PREFIX)
    try:
        names = [n for n in os.listdir(folder) if n.startswith(stem + _NAME_PREFIX)]
    except OSError:
        return
    for name in names:
        pid = name[len(stem + _NAME_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(folder, name))


def _alive(pid: int) -> bool:
    """True when process ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError, IndexError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


@atexit.register
def _stop_all() -> None:
    for server in list(_live):
        with contextlib.suppress(Exception):
            server.close()
