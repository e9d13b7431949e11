"""Relaxed phase energies (cached per calculator and settings) and the energy above a convex hull.

Relaxations go through :class:`ase_unimat.search.pool.RelaxPool`; :class:`EnergyCache` is a JSON
file keyed by ``material_id | calculator | settings hash``, written atomically.
"""


from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.optimize import BFGS, FIRE

from ase_unimat.core.atomic import atomic_write_text
from ase_unimat.core.geometry import atom_counts, shortest_distance
from ase_unimat.evaluation.reference import ReferenceRecord
from ase_unimat.search.calculators import describe_calculator, get_calculator
from ase_unimat.search.pool import RelaxPool
from ase_unimat.search.relax import RelaxResult, RelaxSettings, RelaxTask
from ase_unimat.search.threads import single_threaded_blas

# ----------------------------------------------------------------------------------- energies, cache


@dataclass(frozen=True)
class PhaseEnergy:
    """A relaxed phase: its id, cell counts and total energy (eV) from the calculator."""

    key: str
    counts: dict[str, int]
    energy: float
    steps: int
    status: str


class EnergyCache:
    """Relaxed energies on disk, one JSON object keyed by ``id | calculator | settings-hash``."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._data: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            try:
                self._data = json.loads(self.path.read_text())
            except json.JSONDecodeError as err:
                raise ValueError(f"energy cache {self.path} is not valid JSON: {err}") from None

    @staticmethod
    def key(material_id: str, calculator: str, settings: RelaxSettings) -> str:
        digest = hashlib.sha1(json.dumps(asdict(settings), sort_keys=True).encode()).hexdigest()[:10]
        return f"{material_id}|{calculator}|{digest}"

    def get(self, key: str) -> PhaseEnergy | None:
        """The cached energy of ``key``, or ``None`` when it was never computed."""
        entry = self._data.get(key)
        return None if entry is None else PhaseEnergy(key=key, **entry)

    def put(self, phase: PhaseEnergy) -> None:
        """Store ``phase`` and write the file (atomically)."""
        self._data[phase.key] = {k: v for k, v in asdict(phase).items() if k != "key"}
        atomic_write_text(self.path, json.dumps(self._data, indent=1, sort_keys=True))

    def __len__(self) -> int:
        return len(self._data)


def relax_many(
    structures: Sequence[tuple[str, Atoms]],
    calculator: Any,
    settings: RelaxSettings,
    *,
    calculator_options: Mapping[str, Any] | None = None,
    workers: int = 1,
    source: str = "user",
) -> list[RelaxResult]:
    """Relax ``(id, atoms)`` pairs through :class:`ase_unimat.search.pool.RelaxPool`, results in order.

    ``workers > 1`` uses a spawned process pool whose workers run one BLAS/torch thread each
    (``calculator`` must then be a picklable spec, e.g. ``"chgnet"``).
    """
    options = tuple(sorted((calculator_options or {}).items()))
    tasks = [RelaxTask(id=i, source=source, atoms=a, calculator=calculator, calculator_options=options,
                       settings=settings) for i, a in structures]  # fmt: skip
    return RelaxPool(workers=workers if len(tasks) > 1 else 1).map(tasks)


def phase_energies(
    phases: Sequence[ReferenceRecord | tuple[str, Atoms]],
    calculator: Any,
    settings: RelaxSettings,
    *,
    cache: EnergyCache,
    calculator_name: str | None = None,
    calculator_options: Mapping[str, Any] | None = None,
    workers: int = 1,
) -> list[PhaseEnergy]:
    """Relaxed total energies of ``phases``, from ``cache`` where present, else relaxed and cached.

    ``calculator_name`` names the calculator in the cache key (default: its spec's description).
    Phases whose relaxation fails are cached with ``status="failed"`` and a NaN energy. Phases with
    ``atoms.info["fixed_cell"]`` (a molecule in a box, :func:`elemental_fallback`) are relaxed in
    this process at fixed cell, so the cell filter cannot shrink the box onto the molecule.
    """

    name = calculator_name or describe_calculator(calculator)
    if calculator_options:
        name += json.dumps(dict(sorted(calculator_options.items())), default=str)
    items = [(p.material_id, p.atoms()) if isinstance(p, ReferenceRecord) else p for p in phases]
    keys = [EnergyCache.key(mid, name, settings) for mid, _ in items]
    todo = [(key, atoms) for key, (_, atoms) in zip(keys, items, strict=True) if cache.get(key) is None]
    todo = list(dict(todo).items())  # a phase listed twice is relaxed once
    in_box = [(key, atoms) for key, atoms in todo if atoms.info.get("fixed_cell")]
    free = [(key, atoms) for key, atoms in todo if not atoms.info.get("fixed_cell")]
    results = relax_many(free, calculator, settings, calculator_options=calculator_options, workers=workers)
    for (key, atoms), result in zip(free, results, strict=True):
        counts = atom_counts(atoms)
        cache.put(PhaseEnergy(key=key, counts=counts, energy=float(result.energy) if result.ok else math.nan,
                              steps=int(result.steps), status=result.status))  # fmt: skip
    if in_box:
        box_calculator = get_calculator(calculator, **dict(calculator_options or {}))
        for key, atoms in in_box:
            cache.put(relax_fixed_cell(key, atoms, box_calculator, settings))
    return [cache.get(key) for key in keys]  # type: ignore[misc]


def relax_fixed_cell(key: str, atoms: Atoms, calculator: Any, settings: RelaxSettings) -> PhaseEnergy:
    """Relax the positions of ``atoms`` (a copy) in its fixed cell; a failure gives a NaN energy.

    Uses the optimizer, ``fmax``, ``max_steps``, ``time_limit`` and ``min_distance`` of ``settings``.
    """

    work = atoms.copy()
    work.calc = calculator
    optimizer_class = BFGS if settings.optimizer.upper() == "BFGS" else FIRE
    optimizer = optimizer_class(work, logfile=None)
    energy, start = math.nan, time.perf_counter()
    with single_threaded_blas():
        try:
            for _ in optimizer.irun(fmax=settings.fmax, steps=settings.max_steps):
                if settings.time_limit is not None and time.perf_counter() - start > settings.time_limit:
                    raise TimeoutError(f"past {settings.time_limit} s")
            if len(work) > 1 and shortest_distance(work) < settings.min_distance:
                raise ValueError("atoms collapsed")
            energy = float(work.get_potential_energy())
            if not np.isfinite(work.get_forces()).all():
                energy = math.nan
        except Exception:  # the calculator raised (e.g. EMT without parameters for the element), a timeout
            energy = math.nan
    status = "ok" if math.isfinite(energy) else "failed"
    return PhaseEnergy(key=key, counts=atom_counts(atoms), energy=energy, steps=int(optimizer.nsteps), status=status)


# --------------------------------------------------------------------------------------------- hull


def energy_above_hull(counts: Mapping[str, int], energy: float, phases: Sequence[PhaseEnergy]) -> float:
    """Energy above the hull of ``phases`` (eV/atom) of a cell with ``counts`` and total ``energy``.

    Negative when the structure lies below the hull. Raises ``ValueError`` when an element has no
    elemental phase among ``phases`` (the hull is then undefined).
    """
    from pymatgen.analysis.phase_diagram import PhaseDiagram  # pymatgen is slow to import
    from pymatgen.core import Composition  # pymatgen is slow to import
    from pymatgen.entries.computed_entries import ComputedEntry  # pymatgen is slow to import

    if not math.isfinite(energy):
        raise ValueError("energy is not finite")
    elements = set(counts)
    entries = [ComputedEntry(Composition(p.counts), p.energy) for p in phases
               if math.isfinite(p.energy) and set(p.counts) <= elements]  # fmt: skip
    have = {str(e.composition.elements[0]) for e in entries if len(e.composition.elements) == 1}
    missing = elements - have
    if missing:
        raise ValueError(f"no elemental phase for {', '.join(sorted(missing))}: the hull is undefined")
    diagram = PhaseDiagram(entries)
    entry = ComputedEntry(Composition(dict(counts)), energy)
    _, e_hull = diagram.get_decomp_and_e_above_hull(entry, allow_negative=True)
    return float(e_hull)
