"""Stability of generated structures: relax with an ML potential, energy above a convex hull, S.U.N.

The hull is built from *competing phases taken from our own data* (``mp_20`` train and the extra
Materials Project structures, at most 20 atoms, in the chemical system) relaxed with the same
calculator and settings as the generated structures, so the energies are comparable. Relaxed
phase energies are cached in a JSON file keyed by ``material_id | calculator | settings hash``, so
each phase is computed once per calculator and settings.

Rules (documented choices):
- Per reduced formula only the ``per_formula`` polymorphs of lowest DFT energy above hull (as the
  data records it) enter the hull (default 1); ``None`` takes all. Elements with no elemental
  structure in the data get ASE's reference state (``ase.build.bulk``), keyed ``ase-bulk-<El>``.
- ``e_hull`` may be negative (a structure below our hull), from
  ``PhaseDiagram.get_decomp_and_e_above_hull(..., allow_negative=True)``.
- Uniqueness: pymatgen ``StructureMatcher()`` (default tolerances) within the generated set; the
  first of each group of matching structures is unique. Novelty: no match among training
  structures of the same reduced formula. S.U.N.: stable (``e_hull <= threshold``), unique and
  novel, as a share of all generated structures (MatterGen, Zeni et al. 2025, uses 0.1 eV/atom).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import re
import tarfile
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from ase_unimat.search.relax import RelaxResult, RelaxSettings, RelaxTask, relax_task

#: Where each data source lives under ``../shared/data``.
DATA_SOURCES = {
    "mp_20/train": "mp_20/train.csv.gz",
    "mp_20/val": "mp_20/val.csv.gz",
    "mp_20/test": "mp_20/test.csv.gz",
    "chemeleon_mp40/test": "extra_mp/chemeleon_mp40/test.csv.gz",
    "chemeleon_mp40/random_split_test": "extra_mp/chemeleon_mp40/random_split_test.csv.gz",
    "chemeleon_mp40/mineral_test": "extra_mp/chemeleon_mp40/mineral_test.csv.gz",
    "lemat_mp": "extra_mp/lemat_mp_random_sample/baseline_data_mp.tar.gz",
}
EXTRA_MP = ("chemeleon_mp40/test", "chemeleon_mp40/random_split_test", "chemeleon_mp40/mineral_test", "lemat_mp")
#: Competing phases for hulls: mp_20 train plus the extra MP structures (never val or test).
HULL_SOURCES = ("mp_20/train", *EXTRA_MP)
#: Everything a model may have been trained on (novelty, held-out formulas).
TRAINING_SOURCES = ("mp_20/train", "mp_20/val", *EXTRA_MP)

_FORMULA_SUM = re.compile(r"_chemical_formula_sum\s+'?([^'\n]+)'?")
_COUNT = re.compile(r"([A-Z][a-z]?)(\d*\.?\d*)")


def default_data_dir() -> Path:
    """``$UNIMAT_SHARED_DATA`` or ``../shared/data`` beside the repository checkout."""
    env = os.environ.get("UNIMAT_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


# ------------------------------------------------------------------------------------ reference data


@dataclass(frozen=True)
class ReferenceRecord:
    """One known structure from the data: id, where it came from, its cell counts and CIF text."""

    material_id: str
    source: str
    counts: dict[str, int]  # cell composition
    e_above_hull: float  # DFT value recorded in the data (NaN when the source has none)
    cif: str

    @property
    def natoms(self) -> int:
        return int(sum(self.counts.values()))

    @property
    def elements(self) -> frozenset[str]:
        return frozenset(self.counts)

    @functools.cached_property
    def reduced_formula(self) -> str:
        from pymatgen.core import Composition

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pymatgen warns about missing electronegativities (He, Ne, ...)
            return Composition(self.counts).reduced_formula

    def atoms(self) -> Atoms:
        """The structure as ``ase.Atoms`` (parsed from the CIF)."""
        from pymatgen.core import Structure
        from pymatgen.io.ase import AseAtomsAdaptor

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            structure = Structure.from_str(self.cif, fmt="cif")
        return AseAtomsAdaptor.get_atoms(structure)


def _counts_from_cif(cif: str) -> dict[str, int]:
    match = _FORMULA_SUM.search(cif)
    if match is None:
        raise ValueError("CIF has no _chemical_formula_sum")
    counts: dict[str, int] = {}
    for symbol, number in _COUNT.findall(match.group(1)):
        counts[symbol] = counts.get(symbol, 0) + (round(float(number)) if number else 1)
    return counts


def load_reference_records(
    data_dir: Path | str | None = None, *, sources: Sequence[str] = HULL_SOURCES, max_atoms: int | None = 20
) -> list[ReferenceRecord]:
    """Known structures from the shared data, deduplicated by ``material_id`` (first source wins).

    Parameters
    ----------
    data_dir
        The shared data folder (default :func:`default_data_dir`).
    sources
        Keys of :data:`DATA_SOURCES`, in priority order.
    max_atoms
        Keep cells with at most this many atoms (``None``: all).
    """
    import pandas as pd

    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    unknown = [s for s in sources if s not in DATA_SOURCES]
    if unknown:
        raise ValueError(f"unknown data sources {unknown}; known: {', '.join(DATA_SOURCES)}")
    records: dict[str, ReferenceRecord] = {}
    for source in sources:
        path = data_dir / DATA_SOURCES[source]
        if not path.exists():
            raise FileNotFoundError(f"data file {path} not found (set UNIMAT_SHARED_DATA)")
        if source == "lemat_mp":
            rows = _lemat_rows(path)
        else:
            frame = pd.read_csv(path)
            hull_column = "e_above_hull" if "e_above_hull" in frame else "energy_above_hull"
            hull = frame[hull_column] if hull_column in frame else [math.nan] * len(frame)
            rows = zip(frame["material_id"], frame["cif"], hull, strict=True)
        for material_id, cif, e_hull in rows:
            if material_id in records:
                continue
            counts = _counts_from_cif(cif)
            if max_atoms is not None and sum(counts.values()) > max_atoms:
                continue
            records[material_id] = ReferenceRecord(str(material_id), source, counts, float(e_hull), cif)
    return list(records.values())


def _lemat_rows(path: Path) -> Iterable[tuple[str, str, float]]:
    with tarfile.open(path, "r:gz") as archive:
        for member in archive.getmembers():
            if not member.name.endswith(".cif"):
                continue
            cif = archive.extractfile(member).read().decode()  # type: ignore[union-attr]
            material_id = Path(member.name).stem.removeprefix("mp_")
            yield material_id, cif, math.nan


def competing_phases(
    records: Sequence[ReferenceRecord], elements: Iterable[str], *, per_formula: int | None = 1
) -> list[ReferenceRecord]:
    """Records whose elements lie within ``elements``, ``per_formula`` lowest-DFT-e_hull per formula."""
    chemsys = frozenset(elements)
    inside = [r for r in records if r.elements <= chemsys]
    if per_formula is None:
        return inside
    by_formula: dict[str, list[ReferenceRecord]] = {}
    for record in inside:
        by_formula.setdefault(record.reduced_formula, []).append(record)
    chosen = []
    for group in by_formula.values():
        group.sort(key=lambda r: (math.inf if math.isnan(r.e_above_hull) else r.e_above_hull, r.natoms, r.material_id))
        chosen.extend(group[:per_formula])
    return chosen


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
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        tmp.write_text(json.dumps(self._data, indent=1, sort_keys=True))
        tmp.replace(self.path)

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
    """Relax ``(id, atoms)`` pairs with :func:`ase_unimat.search.relax.relax_task`, in order.

    ``workers > 1`` uses a spawned process pool whose workers run one BLAS/torch thread each
    (``calculator`` must then be a picklable spec, e.g. ``"chgnet"``).
    """
    options = tuple(sorted((calculator_options or {}).items()))
    tasks = [RelaxTask(id=i, source=source, atoms=a, calculator=calculator, calculator_options=options,
                       settings=settings) for i, a in structures]  # fmt: skip
    if workers <= 1 or len(tasks) <= 1:
        return [relax_task(t) for t in tasks]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from ase_unimat.search.threads import init_worker

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=init_worker) as pool:
        return list(pool.map(relax_task, tasks))


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
    Phases whose relaxation fails are cached with ``status="failed"`` and a NaN energy.
    """
    from ase_unimat.search.calculators import describe_calculator

    name = calculator_name or describe_calculator(calculator)
    if calculator_options:
        name += json.dumps(dict(sorted(calculator_options.items())), default=str)
    items = [(p.material_id, p.atoms()) if isinstance(p, ReferenceRecord) else p for p in phases]
    keys = [EnergyCache.key(mid, name, settings) for mid, _ in items]
    todo = [(key, atoms) for key, (_, atoms) in zip(keys, items, strict=True) if cache.get(key) is None]
    todo = list(dict(todo).items())  # a phase listed twice is relaxed once
    results = relax_many(todo, calculator, settings, calculator_options=calculator_options, workers=workers)
    for (key, atoms), result in zip(todo, results, strict=True):
        counts = _counts_of(atoms)
        cache.put(PhaseEnergy(key=key, counts=counts, energy=float(result.energy) if result.ok else math.nan,
                              steps=int(result.steps), status=result.status))  # fmt: skip
    return [cache.get(key) for key in keys]  # type: ignore[misc]


def _counts_of(atoms: Atoms) -> dict[str, int]:
    counts: dict[str, int] = {}
    for symbol in atoms.get_chemical_symbols():
        counts[symbol] = counts.get(symbol, 0) + 1
    return counts


def elemental_fallbacks(records: Sequence[ReferenceRecord], elements: Iterable[str]) -> list[tuple[str, Atoms]]:
    """ASE reference-state structures for elements that have no elemental record in ``records``."""
    from ase.build import bulk

    have = {next(iter(r.elements)) for r in records if len(r.elements) == 1}
    out = []
    for symbol in sorted(set(elements) - have):
        try:
            out.append((f"ase-bulk-{symbol}", bulk(symbol)))
        except (ValueError, KeyError, RuntimeError) as err:
            raise ValueError(f"no elemental reference for {symbol}: not in the data and ASE has none ({err})") from None
    return out


# --------------------------------------------------------------------------------------------- hull


def energy_above_hull(counts: Mapping[str, int], energy: float, phases: Sequence[PhaseEnergy]) -> float:
    """Energy above the hull of ``phases`` (eV/atom) of a cell with ``counts`` and total ``energy``.

    Negative when the structure lies below the hull. Raises ``ValueError`` when an element has no
    elemental phase among ``phases`` (the hull is then undefined).
    """
    from pymatgen.analysis.phase_diagram import PhaseDiagram
    from pymatgen.core import Composition
    from pymatgen.entries.computed_entries import ComputedEntry

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


# ------------------------------------------------------------------------------ uniqueness, novelty


def unique_mask(structures: Sequence[Any]) -> np.ndarray:
    """(N,) bool: True for the first structure of each group of matching structures."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    from ase_unimat.metrics import to_structure

    matcher = StructureMatcher()
    items = [to_structure(s) for s in structures]
    kept: list[int] = []
    mask = np.zeros(len(items), dtype=bool)
    for i, s in enumerate(items):
        if not any(items[j].composition.reduced_formula == s.composition.reduced_formula and matcher.fit(s, items[j])
                   for j in kept):  # fmt: skip
            kept.append(i)
            mask[i] = True
    return mask


def novel_mask(structures: Sequence[Any], training: Sequence[ReferenceRecord]) -> np.ndarray:
    """(N,) bool: True where no training structure of the same reduced formula matches."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    from ase_unimat.metrics import to_structure

    matcher = StructureMatcher()
    by_formula: dict[str, list[ReferenceRecord]] = {}
    for record in training:
        by_formula.setdefault(record.reduced_formula, []).append(record)
    parsed: dict[str, Any] = {}
    mask = np.ones(len(structures), dtype=bool)
    for i, obj in enumerate(structures):
        s = to_structure(obj)
        for record in by_formula.get(s.composition.reduced_formula, []):
            if record.material_id not in parsed:
                parsed[record.material_id] = to_structure(record.atoms())
            if matcher.fit(s, parsed[record.material_id]):
                mask[i] = False
                break
    return mask


# -------------------------------------------------------------------------------------------- report


def stability_report(
    generated: Sequence[Atoms],
    *,
    calculator: Any,
    cache: EnergyCache,
    hull_records: Sequence[ReferenceRecord],
    training_records: Sequence[ReferenceRecord],
    settings: RelaxSettings | None = None,
    calculator_name: str | None = None,
    calculator_options: Mapping[str, Any] | None = None,
    per_formula: int | None = 1,
    stable_threshold: float = 0.1,
    workers: int = 1,
    relax_generated: bool = True,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Relax generated structures, place them on the hull, and count stable/unique/novel ones.

    Parameters
    ----------
    generated
        Structures to judge (relaxed first unless ``relax_generated=False``, when each needs an
        energy from its calculator or ``info["energy"]``).
    calculator, calculator_options, calculator_name
        The ASE calculator spec (``"chgnet"``) used for everything; its name keys the cache.
    cache
        Where relaxed competing-phase energies live.
    hull_records, training_records
        Competing phases (:data:`HULL_SOURCES`) and the training set for novelty (:data:`TRAINING_SOURCES`).
    per_formula
        Polymorphs per reduced formula entering the hull (see the module docstring).
    stable_threshold
        eV/atom above hull still counted as stable in the S.U.N. rate.

    Returns
    -------
    dict
        ``e_hull`` (per structure, NaN where the relaxation failed or no hull could be built, with the
        reason in ``e_hull_missing``), ``frac_e_hull_le_0``,
        ``frac_e_hull_le_0.1``, ``uniqueness``, ``novelty``, ``sun_rate``, quantiles, counts.
    """
    settings = settings or RelaxSettings()
    say = progress or (lambda message: None)
    if not generated:
        raise ValueError("no generated structures")
    if relax_generated:
        say(f"relaxing {len(generated)} generated structures")
        results = relax_many([(f"gen-{i:05d}", a) for i, a in enumerate(generated)], calculator, settings,
                             calculator_options=calculator_options, workers=workers, source="generated")  # fmt: skip
        relaxed = [r.atoms for r in results]
        energies = [r.energy if r.ok else math.nan for r in results]
    else:
        relaxed = list(generated)
        energies = [_given_energy(a) for a in generated]
    elements = sorted({s for a in relaxed for s in a.get_chemical_symbols()})
    chemsys_phases: dict[frozenset[str], list[PhaseEnergy] | str] = {}  # phases, or why there is no hull
    e_hull = np.full(len(relaxed), np.nan)
    reasons = ["" for _ in relaxed]
    for i, (atoms, energy) in enumerate(zip(relaxed, energies, strict=True)):
        if not math.isfinite(energy):
            reasons[i] = "relaxation failed"
            continue
        counts = _counts_of(atoms)
        chemsys = frozenset(counts)
        if chemsys not in chemsys_phases:
            try:
                phases = competing_phases(hull_records, chemsys, per_formula=per_formula)
                fallbacks = elemental_fallbacks(phases, chemsys)
                say(f"{'-'.join(sorted(chemsys))}: {len(phases)} competing phases + {len(fallbacks)} ASE elements")
                chemsys_phases[chemsys] = phase_energies([*phases, *fallbacks], calculator, settings, cache=cache,
                                                         calculator_name=calculator_name,
                                                         calculator_options=calculator_options, workers=workers)  # fmt: skip
            except ValueError as err:  # an element with no reference phase: no hull for this system
                chemsys_phases[chemsys] = f"no hull for {'-'.join(sorted(chemsys))}: {err}"
                say(chemsys_phases[chemsys])
        phases_or_reason = chemsys_phases[chemsys]
        if isinstance(phases_or_reason, str):
            reasons[i] = phases_or_reason
            continue
        try:
            e_hull[i] = energy_above_hull(counts, energy, phases_or_reason)
        except ValueError as err:  # e.g. an elemental phase whose relaxation failed
            reasons[i] = f"no hull: {err}"
    ok = np.isfinite(e_hull)
    unique = unique_mask(relaxed)
    novel = novel_mask(relaxed, training_records)
    stable = ok & (e_hull <= stable_threshold)
    finite = e_hull[ok]
    return {
        "n": len(relaxed),
        "n_relaxed": int(ok.sum()),
        "elements": elements,
        "e_hull": e_hull.tolist(),
        "e_hull_missing": {i: reason for i, reason in enumerate(reasons) if reason},
        "e_hull_quantiles": {q: float(np.quantile(finite, float(q))) for q in ("0.1", "0.25", "0.5", "0.75", "0.9")}
        if finite.size
        else {},
        "frac_e_hull_le_0": float(np.mean(ok & (e_hull <= 1e-8))),
        "frac_e_hull_le_0.1": float(np.mean(ok & (e_hull <= 0.1))),
        "uniqueness": float(unique.mean()),
        "novelty": float(novel.mean()),
        "sun_rate": float(np.mean(stable & unique & novel)),
        "stable_threshold": float(stable_threshold),
        "hull_phases_cached": len(cache),
    }


def _given_energy(atoms: Atoms) -> float:
    if "energy" in atoms.info:
        return float(atoms.info["energy"])
    if atoms.calc is not None:
        return float(atoms.get_potential_energy())
    raise ValueError("relax_generated=False needs an energy in atoms.info['energy'] or a calculator")
