"""Stability of generated structures: relax with an ML potential, energy above a convex hull, S.U.N.

The hull is built from *competing phases taken from our own data* (``mp_20`` train and the extra
Materials Project structures, at most 20 atoms, in the chemical system) relaxed with the same
calculator and settings as the generated structures, so the energies are comparable. Relaxed
phase energies are cached in a JSON file keyed by ``material_id | calculator | settings hash``, so
each phase is computed once per calculator and settings.

Rules (documented choices):
- Per reduced formula only the ``per_formula`` polymorphs of lowest DFT energy above hull (as the
  data records it) enter the hull (default 1); ``None`` takes all.
- Elemental references (:func:`elemental_fallbacks`), one rule for every element 1-94: an element's
  reference is its elemental polymorph of lowest recorded DFT ``e_above_hull`` (unknown counts as
  highest; ties: fewer atoms, then id), first among the hull records, else among *all* elemental
  structures of :data:`HULL_SOURCES` whatever their size (:func:`elemental_records`; alpha-B,
  mp-22046, has 50 atoms). A polymorph is *trusted* when its ``e_above_hull`` is at most
  :data:`ELEMENTAL_TRUST` (0.1 eV/atom); when an element has no trusted polymorph (none, a high one,
  or an unknown one as in the lemat sample, which records no energies), :func:`elemental_fallback`
  is added beside it and the hull keeps whichever relaxes lower. The fallback, tagged by its id:
  ``ase-molecule-X2`` (H, N, O, F, Cl, Br, I: the diatomic molecule, g2 / NIST bond length, alone in
  a cubic box of :data:`BOX_EDGE` Å, relaxed at fixed cell; CHGNet puts it 0.02-0.09 eV/atom above
  the molecular crystals of the data, which therefore win where the data have one);
  ``ase-crystal-X`` (the measured ground-state structure from :data:`ELEMENT_CRYSTALS`, for the
  elements whose ASE reference state is missing or broken: B, P, Ga, Se, Te, Mn, U, Np, Pa, Pm, Ra);
  ``ase-crystal-X-approx`` (a simple stand-in, not the ground state: S as helical chains, fcc Pu,
  He, Rn, At, bcc Fr; a noble-gas atom alone in a box has no neighbours within CHGNet's cutoff);
  else ``ase-bulk-X``, ASE's reference state (``ase.build.bulk``). A stand-in lies above the true
  ground state, which lowers the E_hull of that element's compounds (optimistic).
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
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.build import bulk, molecule
from ase.data import atomic_numbers
from ase.optimize import BFGS, FIRE
from ase.spacegroup import crystal

from ase_unimat.core.atomic import atomic_write_text
from ase_unimat.core.geometry import atom_counts, shortest_distance
from ase_unimat.core.representation import to_structure
from ase_unimat.search.calculators import describe_calculator, get_calculator
from ase_unimat.search.pool import RelaxPool
from ase_unimat.search.relax import RelaxResult, RelaxSettings, RelaxTask
from ase_unimat.search.threads import single_threaded_blas

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

#: DFT e_above_hull (eV/atom) up to which an elemental polymorph of the data is trusted as the reference.
ELEMENTAL_TRUST = 0.1
#: Edge (Å) of the cubic box that holds a diatomic reference molecule, relaxed at fixed cell.
BOX_EDGE = 10.0
#: Elements whose reference is the diatomic molecule in a box.
DIATOMIC = ("H", "N", "O", "F", "Cl", "Br", "I")
#: Bond lengths (Å) of the diatomics missing from ASE's g2 set (NIST CCCBDB, experimental r_e).
_BOND_NOT_IN_G2 = {"Br": 2.281, "I": 2.666}

_FORMULA_SUM = re.compile(r"_chemical_formula_sum\s+'?([^'\n]+)'?")
_COUNT = re.compile(r"([A-Z][a-z]?)(\d*\.?\d*)")


def default_data_dir() -> Path:
    """``$UNIMAT_SHARED_DATA``, else the first ``shared/data`` found beside the repository checkout
    (source tree) or beside/inside the working directory (installed package run from a checkout)."""
    env = os.environ.get("UNIMAT_SHARED_DATA")
    if env:
        return Path(env)
    candidates = [
        Path(__file__).resolve().parents[3] / "shared" / "data",
        Path.cwd().parent / "shared" / "data",
        Path.cwd() / "shared" / "data",
    ]
    return next((path for path in candidates if path.is_dir()), candidates[0])


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
        from pymatgen.core import Composition  # pymatgen is slow to import

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pymatgen warns about missing electronegativities (He, Ne, ...)
            return Composition(self.counts).reduced_formula

    def atoms(self) -> Atoms:
        """The structure as ``ase.Atoms`` (parsed from the CIF)."""
        from pymatgen.core import Structure  # pymatgen is slow to import
        from pymatgen.io.ase import AseAtomsAdaptor  # pymatgen is slow to import

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
    import pandas as pd  # pandas is slow to import

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
        group.sort(key=polymorph_rank)
        chosen.extend(group[:per_formula])
    return chosen


def polymorph_rank(record: ReferenceRecord) -> tuple[float, int, str]:
    """Sort key of polymorphs: recorded DFT ``e_above_hull`` (unknown last), then fewer atoms, then id."""
    e_hull = math.inf if math.isnan(record.e_above_hull) else record.e_above_hull
    return e_hull, record.natoms, record.material_id


# ---------------------------------------------------------------------------- elemental references


@dataclass(frozen=True)
class ElementCrystal:
    """A crystal to build an element's reference from: space group, cell parameters, Wyckoff sites.

    ``approximate`` marks a stand-in that is not the element's ground-state structure.
    """

    spacegroup: int
    cellpar: tuple[float, float, float, float, float, float]  # a, b, c (Å); alpha, beta, gamma (degrees)
    basis: tuple[tuple[float, float, float], ...]  # fractional Wyckoff positions
    approximate: bool
    note: str


def _cubic(a: float) -> tuple[float, float, float, float, float, float]:
    return (a, a, a, 90.0, 90.0, 90.0)


def _hexagonal(a: float, c: float) -> tuple[float, float, float, float, float, float]:
    return (a, a, c, 90.0, 90.0, 120.0)


#: Crystals for the elements whose ASE reference state is missing (B, P, Ga, Se, Te, Mn, Pa, Pm, Ra,
#: S, Pu, He, Rn, At, Fr) or broken (U, Np: ASE builds a one-atom cell without the basis, 83 and 154 Å^3/atom).
#: Measured room-temperature structures as tabulated in J. Donohue, *The Structures of the Elements*
#: (Wiley, 1974), and the papers named; the relaxation refines the cell, so the values are starts.
ELEMENT_CRYSTALS: dict[str, ElementCrystal] = {
    "B": ElementCrystal(166, _hexagonal(4.908, 12.567), ((0.11886, -0.11886, 0.89133), (0.19686, -0.19686, 0.02432)),
                        False, "alpha-B, R-3m, 12 atoms (Decker & Kasper, Acta Cryst. 12, 503, 1959)"),
    "P": ElementCrystal(64, (3.3136, 10.478, 4.3763, 90.0, 90.0, 90.0), ((0.0, 0.10168, 0.08056),),
                        False, "black P, Cmce (Brown & Rundqvist, Acta Cryst. 19, 684, 1965)"),
    "Ga": ElementCrystal(64, (4.5197, 7.6633, 4.5260, 90.0, 90.0, 90.0), ((0.0, 0.1549, 0.0810),),
                         False, "alpha-Ga, Cmce (Sharma & Donohue, Z. Kristallogr. 117, 293, 1962)"),
    "Se": ElementCrystal(152, _hexagonal(4.3662, 4.9536), ((0.2254, 0.0, 1 / 3),),
                         False, "trigonal Se, P3_121 (Cherin & Unger, Acta Cryst. 23, 670, 1967)"),
    "Te": ElementCrystal(152, _hexagonal(4.4572, 5.929), ((0.2636, 0.0, 1 / 3),),
                         False, "trigonal Te, P3_121"),
    "Mn": ElementCrystal(217, _cubic(8.9125), ((0.0, 0.0, 0.0), (0.3179, 0.3179, 0.3179), (0.3571, 0.3571, 0.0347),
                                               (0.0896, 0.0896, 0.2819)),
                         False, "alpha-Mn, I-43m, 29 atoms (Bradley & Thewlis, Proc. R. Soc. A 115, 456, 1927)"),
    "U": ElementCrystal(63, (2.854, 5.869, 4.955, 90.0, 90.0, 90.0), ((0.0, 0.1025, 0.25),),
                        False, "alpha-U, Cmcm (Barrett, Mueller & Hitterman, Phys. Rev. 129, 625, 1963)"),
    "Np": ElementCrystal(62, (6.663, 4.723, 4.887, 90.0, 90.0, 90.0), ((0.036, 0.25, 0.220), (0.319, 0.25, 0.866)),
                         False, "alpha-Np, Pnma (Zachariasen, Acta Cryst. 5, 660, 1952)"),
    "Pa": ElementCrystal(139, (3.925, 3.925, 3.238, 90.0, 90.0, 90.0), ((0.0, 0.0, 0.0),),
                         False, "body-centred tetragonal Pa, I4/mmm (Zachariasen, Acta Cryst. 5, 19, 1952)"),
    "Pm": ElementCrystal(194, _hexagonal(3.65, 11.65), ((0.0, 0.0, 0.0), (1 / 3, 2 / 3, 0.25)),
                         False, "double-hcp Pm, P6_3/mmc, like Nd (Pallmer & Chikalla, J. Less-Common Met. 24, 233, 1971)"),
    "Ra": ElementCrystal(229, _cubic(5.148), ((0.0, 0.0, 0.0),), False, "bcc Ra (Weigel & Trinkl, Radiochim. Acta 10, 78, 1968)"),
    "S": ElementCrystal(152, _hexagonal(3.930, 4.458), ((0.2254, 0.0, 1 / 3),),
                        True, "stand-in for orthorhombic S8 (128 atoms): helical chains in the trigonal-Se cell x 0.9"),
    "Pu": ElementCrystal(225, _cubic(4.637), ((0.0, 0.0, 0.0),), True, "stand-in for monoclinic alpha-Pu: fcc delta-Pu"),
    "He": ElementCrystal(225, _cubic(5.19), ((0.0, 0.0, 0.0),), True,
                         "stand-in for hcp He (solid only under pressure): fcc at its 35 Å^3/atom"),
    "Rn": ElementCrystal(225, _cubic(6.4), ((0.0, 0.0, 0.0),), True, "no measured structure: fcc like Xe"),
    "At": ElementCrystal(225, _cubic(4.95), ((0.0, 0.0, 0.0),), True, "no measured structure: fcc, ~3.5 Å neighbours"),
    "Fr": ElementCrystal(229, _cubic(6.2), ((0.0, 0.0, 0.0),), True, "no measured structure: bcc like Cs"),
}  # fmt: skip


def elemental_records(
    data_dir: Path | str | None = None, elements: Iterable[str] | None = None, *, sources: Sequence[str] = HULL_SOURCES
) -> dict[str, ReferenceRecord]:
    """Each element's best elemental polymorph (:func:`polymorph_rank`) in the data, at any cell size.

    Parameters
    ----------
    data_dir
        The shared data folder (default :func:`default_data_dir`).
    elements
        Symbols to return (default: every element with an elemental structure in the data).
    sources
        Keys of :data:`DATA_SOURCES` to search.
    """
    folder = str(Path(data_dir) if data_dir is not None else default_data_dir())
    best = _elemental_records(folder, tuple(sources))
    wanted = set(best) if elements is None else set(elements)
    return {symbol: record for symbol, record in best.items() if symbol in wanted}


@functools.lru_cache(maxsize=4)
def _elemental_records(data_dir: str, sources: tuple[str, ...]) -> dict[str, ReferenceRecord]:
    """Read once per process: the data are large and do not change."""
    return _best_per_element(load_reference_records(data_dir, sources=sources, max_atoms=None))


def _best_per_element(records: Iterable[ReferenceRecord]) -> dict[str, ReferenceRecord]:
    best: dict[str, ReferenceRecord] = {}
    for record in records:
        if len(record.counts) != 1:
            continue
        symbol = next(iter(record.counts))
        if symbol not in best or polymorph_rank(record) < polymorph_rank(best[symbol]):
            best[symbol] = record
    return best


def _trusted(record: ReferenceRecord | None, trust: float) -> bool:
    return record is not None and record.e_above_hull <= trust  # NaN (unknown) is never trusted


def elemental_fallback(symbol: str) -> tuple[str, Atoms]:
    """The reference structure that exists for every element 1-94 without data, with its id.

    See the module docstring for the rule. Gas-phase references carry ``info["fixed_cell"] = True``
    (:func:`phase_energies` relaxes them without changing the box). Raises ``ValueError`` for an
    element beyond Pu or an unknown symbol.
    """

    number = atomic_numbers.get(symbol, 0)
    if not 1 <= number <= 94:
        raise ValueError(f"no elemental reference for {symbol!r}: only elements 1-94 (H to Pu) have one")
    if symbol in DIATOMIC:
        bond = _BOND_NOT_IN_G2[symbol] if symbol in _BOND_NOT_IN_G2 else molecule(f"{symbol}2").get_distance(0, 1)
        return f"ase-molecule-{symbol}2", _in_box(Atoms(f"{symbol}2", positions=[(0, 0, 0), (0, 0, bond)]))
    if symbol in ELEMENT_CRYSTALS:
        spec = ELEMENT_CRYSTALS[symbol]
        atoms = crystal([symbol] * len(spec.basis), list(spec.basis), spacegroup=spec.spacegroup,
                        cellpar=list(spec.cellpar), primitive_cell=True)  # fmt: skip
        return f"ase-crystal-{symbol}{'-approx' if spec.approximate else ''}", atoms
    return f"ase-bulk-{symbol}", bulk(symbol)


def _in_box(atoms: Atoms) -> Atoms:
    atoms.set_cell([BOX_EDGE] * 3)
    atoms.pbc = True
    atoms.center()
    atoms.info["fixed_cell"] = True
    return atoms


def elemental_fallbacks(
    records: Sequence[ReferenceRecord],
    elements: Iterable[str],
    *,
    data_dir: Path | str | None = None,
    sources: Sequence[str] = HULL_SOURCES,
    trust: float = ELEMENTAL_TRUST,
) -> list[tuple[str, Atoms]]:
    """``(id, atoms)`` elemental references to add to ``records`` so that every element has one.

    For each element without a trusted elemental polymorph in ``records``: its best polymorph in
    the data (any size, :func:`elemental_records`, keyed by ``material_id``) unless ``records``
    already hold it, and, when that is not trusted either, :func:`elemental_fallback`. ``sources=()``
    skips the data, and so does a missing default data folder (``data_dir=None``: the caller gave the
    hull records, so the data is an extra); a missing ``data_dir`` given explicitly is an error.
    ``trust`` is :data:`ELEMENTAL_TRUST` (eV/atom above the DFT hull).
    """
    given = _best_per_element(records)
    wanted = [symbol for symbol in sorted(set(elements)) if not _trusted(given.get(symbol), trust)]
    use_data = bool(wanted and sources) and (data_dir is not None or default_data_dir().is_dir())
    data = elemental_records(data_dir, wanted, sources=sources) if use_data else {}
    out = []
    for symbol in wanted:
        record = data.get(symbol)
        if record is not None and (symbol not in given or given[symbol].material_id != record.material_id):
            out.append((record.material_id, record.atoms()))
        if not _trusted(record, trust):
            out.append(elemental_fallback(symbol))
    return out


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


# ------------------------------------------------------------------------------ uniqueness, novelty


def unique_mask(structures: Sequence[Any]) -> np.ndarray:
    """(N,) bool: True for the first structure of each group of matching structures."""
    from pymatgen.analysis.structure_matcher import StructureMatcher  # pymatgen is slow to import

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
    from pymatgen.analysis.structure_matcher import StructureMatcher  # pymatgen is slow to import

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
    data_dir: Path | str | None = None,
    elemental_sources: Sequence[str] = HULL_SOURCES,
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
    data_dir, elemental_sources
        Where elements without a trusted elemental phase in ``hull_records`` find one (any size;
        ``elemental_sources=()``: none) before the fallback (:func:`elemental_fallbacks`).

    Returns
    -------
    dict
        ``e_hull`` (per structure, NaN where the relaxation failed or no hull could be built, with the
        reason in ``e_hull_missing``), ``elemental_references`` (element: id of the elemental phase
        the hulls used, the lowest per atom), ``frac_e_hull_le_0``,
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
        counts = atom_counts(atoms)
        chemsys = frozenset(counts)
        if chemsys not in chemsys_phases:
            try:
                phases = competing_phases(hull_records, chemsys, per_formula=per_formula)
                fallbacks = elemental_fallbacks(phases, chemsys, data_dir=data_dir, sources=elemental_sources)
                added = f" + {', '.join(name for name, _ in fallbacks)}" if fallbacks else ""
                say(f"{'-'.join(sorted(chemsys))}: {len(phases)} competing phases{added}")
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
        "elemental_references": _elemental_choices(chemsys_phases.values()),
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


def _elemental_choices(systems: Iterable[list[PhaseEnergy] | str]) -> dict[str, str]:
    """Element -> id of its lowest-energy-per-atom relaxed elemental phase over the systems' phases."""
    best: dict[str, tuple[float, str]] = {}
    for phase in (p for phases in systems if not isinstance(phases, str) for p in phases):
        if len(phase.counts) != 1 or not math.isfinite(phase.energy):
            continue
        symbol = next(iter(phase.counts))
        per_atom = phase.energy / sum(phase.counts.values())
        if symbol not in best or per_atom < best[symbol][0]:
            best[symbol] = (per_atom, phase.key.split("|")[0])
    return {symbol: best[symbol][1] for symbol in sorted(best)}


def _given_energy(atoms: Atoms) -> float:
    if "energy" in atoms.info:
        return float(atoms.info["energy"])
    if atoms.calc is not None:
        return float(atoms.get_potential_energy())
    raise ValueError("relax_generated=False needs an energy in atoms.info['energy'] or a calculator")
