"""Variable-cell relaxation of one structure under hydrostatic pressure, with any ASE calculator.

:func:`relax` runs ``FrechetCellFilter(atoms, scalar_pressure=P)`` with FIRE or BFGS and returns a
:class:`RelaxResult` whatever happens: a seed whose calculator raises, returns NaN, whose volume
explodes or whose atoms collapse onto each other, or that runs past its time limit, comes back
with ``status="failed"`` and the reason, so a search records it and goes on.

:func:`relax_task` is the picklable unit of work sent to process pools and Dask: it carries the
calculator *spec* and builds the calculator inside the worker.
"""

from __future__ import annotations

import contextlib
import functools
import math
import signal
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from ase import Atoms
from ase.filters import FrechetCellFilter
from ase.optimize import BFGS, FIRE
from ase.units import GPa

from ase_unimat.core.geometry import shortest_distance
from ase_unimat.core.messages import one_line
from ase_unimat.search.calculators import get_calculator
from ase_unimat.search.threads import single_threaded_blas

OPTIMIZERS = ("FIRE", "BFGS")


@dataclass(frozen=True)
class RelaxSettings:
    """How to relax: pressure in GPa, force tolerance in eV/Å, limits that mark a seed as failed.

    ``time_limit`` is seconds of wall time per structure (``None``: no limit). A relaxation fails
    when its volume per atom leaves ``[min_volume_ratio, max_volume_ratio]`` times the start, or
    two atoms come closer than ``min_distance`` Å.
    """

    pressure: float = 0.0
    fmax: float = 0.05
    max_steps: int = 500
    optimizer: str = "FIRE"
    time_limit: float | None = None
    max_volume_ratio: float = 5.0
    min_volume_ratio: float = 0.2
    min_distance: float = 0.5
    check_interval: int = 10  # steps between the NaN and distance checks (the volume is checked every step)

    def __post_init__(self) -> None:
        if not math.isfinite(self.pressure) or self.pressure < -100:
            raise ValueError(f"pressure must be a finite number of GPa >= -100, got {self.pressure}")
        if not math.isfinite(self.fmax) or self.fmax <= 0:
            raise ValueError(f"fmax must be a positive number of eV/Å, got {self.fmax}")
        if int(self.max_steps) != self.max_steps or self.max_steps < 0:
            raise ValueError(f"max_steps must be a non-negative integer, got {self.max_steps}")
        if self.optimizer.upper() not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.time_limit is not None and not self.time_limit > 0:
            raise ValueError(f"time limit must be a positive number of seconds, got {self.time_limit}")


@dataclass
class RelaxResult:
    """What one relaxation produced (a finished record of a search).

    ``energy`` and ``enthalpy`` (E + PV) are in eV, ``volume`` in Å³, ``pressure`` in GPa; they are
    NaN for a failed relaxation that never produced them. ``atoms`` is the last geometry reached.
    """

    id: str
    source: str
    status: str  # "ok" | "failed"
    reason: str
    atoms: Atoms
    energy: float
    enthalpy: float
    volume: float
    pressure: float
    steps: int
    converged: bool
    wall_time: float
    seed_info: dict[str, Any] = field(default_factory=dict)
    spacegroup: str = ""  # filled in when the result is stored (spglib, see airss_io.SYMPREC)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (atoms as numbers/cell/positions lists)."""
        out = {k: v for k, v in asdict(self).items() if k != "atoms"}
        out["atoms"] = {
            "numbers": self.atoms.numbers.tolist(),
            "cell": self.atoms.cell.array.tolist(),
            "positions": self.atoms.positions.tolist(),
        }
        for key in ("energy", "enthalpy", "volume"):
            out[key] = None if not math.isfinite(out[key]) else out[key]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RelaxResult:
        """Inverse of :meth:`to_dict`."""
        fields = dict(data)
        raw = fields.pop("atoms")
        atoms = Atoms(numbers=raw["numbers"], cell=raw["cell"], positions=raw["positions"], pbc=True)
        for key in ("energy", "enthalpy", "volume"):
            fields[key] = float("nan") if fields.get(key) is None else float(fields[key])
        return cls(atoms=atoms, **fields)


class RelaxFailure(Exception):
    """Internal: a relaxation left its sane range (carries the reason)."""


class _Timeout(BaseException):
    """Internal: raised by the wall-time alarm inside a long calculator call."""


def relax(
    atoms: Atoms,
    calculator: Any,
    settings: RelaxSettings | None = None,
    *,
    id: str = "structure",
    source: str = "user",
) -> RelaxResult:
    """Relax ``atoms`` (a copy) in a variable cell at ``settings.pressure`` with ``calculator``.

    Parameters
    ----------
    atoms
        Starting structure (not modified).
    calculator
        Any ASE calculator object (build one from a name with ``get_calculator``).
    settings
        Pressure, optimizer, tolerances and failure limits (default :class:`RelaxSettings()`).
    id, source
        Name and seed source recorded in the result.

    Returns
    -------
    RelaxResult
        ``status="ok"`` (converged or not within ``max_steps``) or ``"failed"`` with a reason.
    """

    settings = settings or RelaxSettings()
    work = atoms.copy()
    work.calc = calculator
    seed_info = _json_safe(atoms.info)
    start = time.perf_counter()
    volume_per_atom0 = work.get_volume() / len(work)
    steps, converged = 0, False
    status, reason = "ok", ""
    energy = float("nan")
    try:  # the alarm lives inside this try: a timeout at any moment, even while arming, is caught here
        # the calculator's relaxation scope (pw.x kept running) ends after the alarm is disarmed: its clean-up runs
        with _relaxation_scope(calculator), single_threaded_blas(), _alarm(settings.time_limit):
            try:
                cell_filter = FrechetCellFilter(work, scalar_pressure=settings.pressure * GPa)
                optimizer_class = FIRE if settings.optimizer.upper() == "FIRE" else BFGS
                optimizer = optimizer_class(cell_filter, logfile=None)
                for step, converged in enumerate(optimizer.irun(fmax=settings.fmax, steps=settings.max_steps)):
                    steps = step
                    _check_volume(work, volume_per_atom0, settings)
                    if step % settings.check_interval == 0 or converged:
                        _check_finite(work)
                        _check_distances(work, settings.min_distance)
                    if settings.time_limit is not None and time.perf_counter() - start > settings.time_limit:
                        raise _Timeout
                _check_finite(work)
                _check_distances(work, settings.min_distance)
                energy = float(work.get_potential_energy())
            except RelaxFailure as err:
                status, reason = "failed", str(err)
            except Exception as err:  # the calculator (or the optimizer on its output) raised
                geometry_ok = np.isfinite(work.positions).all() and np.isfinite(work.cell.array).all()
                if not geometry_ok or _has_nonfinite_results(calculator):  # NaN results moved the atoms to NaN
                    status, reason = "failed", f"non-finite energy, forces or stress ({type(err).__name__} followed)"
                else:
                    message = one_line(err, limit=300, empty="(no message)")
                    status, reason = "failed", f"calculator raised {type(err).__name__}: {message}"
    except _Timeout:
        status, reason = "failed", f"timeout after {time.perf_counter() - start:.1f} s (limit {settings.time_limit} s)"
    if not math.isfinite(energy) and status == "ok":
        status, reason = "failed", "non-finite energy"
    volume = float(abs(np.linalg.det(work.cell.array)))
    relaxed = Atoms(numbers=work.numbers, cell=work.cell.array, positions=work.positions, pbc=True)
    return RelaxResult(
        id=id,
        source=source,
        status=status,
        reason=reason,
        atoms=relaxed,
        energy=energy if status == "ok" else float("nan"),
        enthalpy=energy + settings.pressure * GPa * volume if status == "ok" else float("nan"),
        volume=volume,
        pressure=float(settings.pressure),
        steps=int(steps),
        converged=bool(converged) and status == "ok",
        wall_time=time.perf_counter() - start,
        seed_info=seed_info,
    )


def _relaxation_scope(calculator: Any) -> contextlib.AbstractContextManager:
    """``calculator.relaxation()`` where it has one (EspressoForSearch: one pw.x per relaxation), else a no-op."""
    scope = getattr(calculator, "relaxation", None)
    return scope() if callable(scope) else contextlib.nullcontext()


def _check_finite(atoms: Atoms) -> None:
    # Results are cached by the calculator after the optimizer's own call: no new calculation here.
    energy = atoms.get_potential_energy()
    forces = atoms.get_forces()  # (N, 3)
    try:
        energy, forces = float(energy), np.asarray(forces, dtype=float)
    except (TypeError, ValueError):
        raise RelaxFailure(f"energy or forces not a number (energy {_one_line_value(energy)})") from None
    if not (math.isfinite(energy) and np.isfinite(forces).all()):
        raise RelaxFailure("non-finite energy or forces")


def _has_nonfinite_results(calculator: Any) -> bool:
    """True when the calculator's last results hold NaN or inf (ASE calculators keep ``results``)."""
    results = getattr(calculator, "results", None)
    if not isinstance(results, Mapping):
        return False
    values = [results[k] for k in ("energy", "forces", "stress") if results.get(k) is not None]
    try:
        return any(not np.isfinite(np.asarray(v, dtype=float)).all() for v in values)
    except (TypeError, ValueError):  # not a number at all ("abc", None inside an array)
        return True


def _check_volume(atoms: Atoms, volume_per_atom0: float, settings: RelaxSettings) -> None:
    ratio = abs(np.linalg.det(atoms.cell.array)) / len(atoms) / volume_per_atom0
    if not math.isfinite(ratio):
        raise RelaxFailure("non-finite cell (the calculator returned NaN stress or forces)")
    if ratio > settings.max_volume_ratio:
        raise RelaxFailure(
            f"volume exploded: volume per atom {ratio:.2f}x the start (limit {settings.max_volume_ratio}x)"
        )
    if ratio < settings.min_volume_ratio:
        raise RelaxFailure(
            f"volume collapsed: volume per atom {ratio:.2f}x the start (limit {settings.min_volume_ratio}x)"
        )


def _check_distances(atoms: Atoms, min_distance: float) -> None:
    distance = shortest_distance(atoms)
    if distance < min_distance:
        raise RelaxFailure(f"atoms collapsed: two atoms {distance:.2f} Å apart (limit {min_distance} Å)")


#: Longer limits than this (about 30 years; ``inf``, ``1e300``) arm no alarm: ``setitimer`` would overflow.
_MAX_ALARM_S = 1e9


@contextlib.contextmanager
def _alarm(seconds: float | None) -> Iterator[None]:
    """Interrupt a long calculator call after ``seconds`` (main thread on Unix only; else no-op).

    The caller must catch :class:`_Timeout` outside this context: the alarm may fire at any moment
    once armed, also before the body starts. After exit no :class:`_Timeout` is raised any more.
    """
    usable = (
        seconds is not None
        and math.isfinite(seconds)
        and seconds < _MAX_ALARM_S
        and hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
        and signal.getitimer(signal.ITIMER_REAL)[0] == 0.0
    )
    if not usable:
        yield
        return

    armed = [True]

    def on_alarm(signum: int, frame: Any) -> None:
        if armed[0]:  # a signal handled after the body ended raises nothing
            raise _Timeout

    previous = signal.signal(signal.SIGALRM, on_alarm)
    try:
        signal.setitimer(signal.ITIMER_REAL, float(seconds))
        yield
    finally:
        armed[0] = False
        signal.setitimer(signal.ITIMER_REAL, 0.0)
        signal.signal(signal.SIGALRM, previous)


def _one_line_value(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _json_safe(info: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON-representable part of ``atoms.info`` (numpy scalars converted)."""
    out: dict[str, Any] = {}
    for key, value in info.items():
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, str | int | float | bool) or value is None:
            out[str(key)] = value
    return out


@dataclass(frozen=True)
class RelaxTask:
    """One seed to relax in a worker: the structure, the calculator spec and the settings."""

    id: str
    source: str
    atoms: Atoms
    calculator: Any  # a spec understood by get_calculator (name, "module:factory", object, factory)
    calculator_options: tuple[tuple[str, Any], ...] = ()
    settings: RelaxSettings = RelaxSettings()


def relax_task(task: RelaxTask) -> RelaxResult:
    """Build the calculator in this process (cached per named spec) and relax the task's seed."""
    if isinstance(task.calculator, str) and _hashable(task.calculator_options):  # one per thread
        calculator = _cached_calculator(task.calculator, task.calculator_options, threading.get_ident())
    else:  # an object or factory, or options with lists in them (kpts=[4, 4, 4]): built for this task
        calculator = get_calculator(task.calculator, **dict(task.calculator_options))
    return relax(task.atoms, calculator, task.settings, id=task.id, source=task.source)


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


@functools.lru_cache(maxsize=16)
def _cached_calculator(spec: str, options: tuple[tuple[str, Any], ...], thread: int) -> Any:
    """A worker builds each named calculator once per thread (CHGNet loads its weights once)."""

    return get_calculator(spec, **dict(options))
