"""Our AIRSS-like random seeds: a random cell of the target volume, atoms placed under MINSEP.

How one seed is built (all randomness from the ``rng`` passed in):

1. **Volume.** ``V = volume_per_atom * natoms`` with ``volume_per_atom`` drawn uniformly from the
   given range (``#TARGVOL``/``#VARVOL``), or from covalent radii (:mod:`.volume`) when none is given;
   a single value ``v`` becomes the range ``v * (1 -/+ volume_spread)`` (AIRSS varies it by +-5 %).
2. **Cell.** Without symmetry: lengths with ratios up to ``max_length_ratio``, angles uniform in
   ``angle_range``, cells flatter than ``min_cell_factor`` rejected, then scaled to ``V``. With
   ``symmops``: a space group whose operation count (in its conventional cell, centring included,
   as spglib counts them) lies in the range and whose orbit sizes can add up to every species count,
   and a lattice of its crystal system (the standard setting of ``spglib.get_symmetry_from_database``).
3. **Atoms.** Random sequential addition: each atom (or symmetry orbit) at a uniformly random
   position, rejected while closer than ``(1 - max(slack, overlap)) * minsep`` to any atom or
   periodic image; orbits land on special positions by snapping a random point onto the points its
   near-stabiliser fixes. ``minsep`` is pair-specific (``pair_minsep``), else ``minsep``, else
   ``0.7 (r_i + r_j)`` from covalent radii.
4. **SLACK / OVERLAP** (AIRSS semantics, hard spheres): with ``slack > 0`` atoms are first placed with
   spheres shrunk by ``slack`` and then pushed apart (soft-sphere steps toward the full ``minsep``).
   A seed is accepted when every pair is at least ``(1 - overlap) * minsep`` apart, so with the
   defaults (0, 0) MINSEP holds exactly. This holds for symmetric seeds too: pairwise pushes of a
   symmetric structure are themselves symmetric, so the pushed seed keeps its operations.
5. **Retries.** A failed placement restarts with a fresh cell, at most ``max_attempts`` times; then
   :class:`ImpossibleSeedError`. If hard spheres of diameter ``minsep`` cannot fit at all (packing
   fraction above 0.74 in the largest allowed volume), the error comes at once.
6. **Size.** At most :data:`MAX_ATOMS` atoms per cell (placement and push work on all pairs of
   atoms, N^2 per step); more is refused at once.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from ase import Atoms
from ase.build import niggli_reduce
from ase.geometry import cellpar_to_cell

from ase_unimat.search.seeds import NoSeedsForFormula, Seed, SeedSourceError, make_seed, seed_rng
from ase_unimat.search.spacegroups import SpaceGroup, SpaceGroupLibrary, representable
from ase_unimat.search.volume import PACKING, default_minsep, estimate_volume

#: Densest packing of equal spheres (fcc/hcp), the bound of the upfront MINSEP check.
MAX_PACKING_FRACTION = 0.7405
#: Most atoms in one random seed: placing and pushing are quadratic in the atom count.
MAX_ATOMS = 1000


class ImpossibleSeedError(SeedSourceError):
    """MINSEP, volume and composition that no random seed can satisfy."""


@dataclass(frozen=True)
class RandomSeedOptions:
    """How random seeds are built (the directives of an AIRSS seed file, with our defaults)."""

    minsep: float | None = None  # default minimum separation (A) for pairs not in pair_minsep
    pair_minsep: Mapping[tuple[str, str], float] = field(default_factory=dict)  # ("A", "B") -> A
    volume_per_atom: tuple[float, float] | None = None  # A^3 per atom; None: from covalent radii
    volume_spread: float = 0.05  # relative spread when volume_per_atom is one value
    symmops: tuple[int, int] | None = None  # number of symmetry operations, inclusive range
    slack: float = 0.0
    overlap: float = 0.0
    compact: bool = False  # Niggli-reduce P1 cells (AIRSS #COMPACT)
    cell: tuple[tuple[float, ...], ...] | None = None  # fixed cell rows (AIRSS #FIX); P1 only
    packing: float = PACKING
    angle_range: tuple[float, float] = (60.0, 120.0)
    max_length_ratio: float = 3.0
    min_cell_factor: float = 0.5  # V / (a b c) below this is too flat
    max_attempts: int = 500
    tries_per_atom: int = 200
    push_steps: int = 200

    def __post_init__(self) -> None:
        numbers = [self.minsep if self.minsep is not None else 0.0, *self.pair_minsep.values(),
                   *(self.volume_per_atom or ())]
        if not all(math.isfinite(float(v)) for v in numbers):
            raise SeedSourceError(f"MINSEP and volumes must be finite, got MINSEP {self.minsep}, "
                                  f"pairs {dict(self.pair_minsep)}, volume per atom {self.volume_per_atom}")
        for name in ("slack", "overlap"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise SeedSourceError(f"{name.upper()} must be in [0, 1), got {value}")
        if self.minsep is not None and self.minsep < 0:
            raise SeedSourceError(f"MINSEP must be non-negative, got {self.minsep}")
        if any(v < 0 for v in self.pair_minsep.values()):
            raise SeedSourceError(f"pair MINSEP values must be non-negative, got {dict(self.pair_minsep)}")
        if self.volume_per_atom is not None:
            lo, hi = self.volume_per_atom
            if not 0 < lo <= hi:
                raise SeedSourceError(f"target volume range must be positive and ordered, got {self.volume_per_atom}")
        if not 0 <= self.volume_spread < 1:
            raise SeedSourceError(f"volume spread must be in [0, 1), got {self.volume_spread}")
        if self.symmops is not None and not 1 <= self.symmops[0] <= self.symmops[1]:
            raise SeedSourceError(f"SYMMOPS range must be 1 <= N <= M, got {self.symmops}")
        if self.cell is not None and self.symmops not in (None, (1, 1)):
            raise SeedSourceError("a fixed cell cannot be combined with SYMMOPS")
        if self.max_attempts < 1 or self.tries_per_atom < 1:
            raise SeedSourceError("max_attempts and tries_per_atom must be positive")

    def minsep_of(self, a: str, b: str) -> float:
        """Minimum separation (A) of a pair of elements."""
        for key in ((a, b), (b, a)):
            if key in self.pair_minsep:
                return float(self.pair_minsep[key])
        return float(self.minsep) if self.minsep is not None else default_minsep(a, b)

    def volume_range(self, counts: Mapping[str, int]) -> tuple[float, float]:
        """(lowest, highest) cell volume of ``counts`` in A^3."""
        natoms = sum(counts.values())
        if self.cell is not None:
            volume = abs(float(np.linalg.det(np.array(self.cell))))
            return volume, volume
        if self.volume_per_atom is None:
            v = estimate_volume(counts, packing=self.packing) / natoms
            lo, hi = v, v
        else:
            lo, hi = self.volume_per_atom
        if lo == hi:
            lo, hi = lo * (1 - self.volume_spread), hi * (1 + self.volume_spread)
        return lo * natoms, hi * natoms


def random_structure(
    counts: Mapping[str, int],
    *,
    options: RandomSeedOptions | None = None,
    rng: np.random.Generator,
    groups: SpaceGroupLibrary | None = None,
) -> Atoms:
    """One random structure of ``counts`` under ``options`` (see the module docstring).

    Parameters
    ----------
    counts
        Element -> number of atoms in the cell.
    options
        Directives; ``None`` means all defaults (P1, volume and MINSEP from covalent radii).
    rng
        The only source of randomness.
    groups
        Cache of space-group data, shared between calls to save time (built when ``None``).

    Returns
    -------
    ase.Atoms
        ``info`` holds ``target_volume``, ``spacegroup_built`` and ``n_symmops``.
    """
    options = options or RandomSeedOptions()
    counts = {s: int(n) for s, n in counts.items() if int(n) > 0}
    if not counts:
        raise SeedSourceError("empty composition")
    if sum(counts.values()) > MAX_ATOMS:
        raise SeedSourceError(
            f"{_formula(counts)} has {sum(counts.values())} atoms; random seeds are built for at most {MAX_ATOMS}"
        )
    symbols = list(counts)
    minsep = np.array([[options.minsep_of(a, b) for b in symbols] for a in symbols])  # (S, S)
    _check_packing(counts, minsep, options)
    accept = (1.0 - options.overlap) * minsep
    place = (1.0 - max(options.slack, options.overlap)) * minsep
    if options.symmops is not None and options.symmops != (1, 1):
        groups = groups or SpaceGroupLibrary()
        candidates = groups.candidates(list(counts.values()), options.symmops)
        if not candidates:
            raise NoSeedsForFormula(
                f"no space group with {options.symmops[0]}-{options.symmops[1]} operations has orbits "
                f"that add up to the counts {counts}"
            )
    vlo, vhi = options.volume_range(counts)
    for _ in range(options.max_attempts):
        volume = float(rng.uniform(vlo, vhi))
        if options.symmops is None or options.symmops == (1, 1):
            atoms = _try_p1(counts, minsep, place, accept, volume, options, rng)
            hall, nops = 1, 1
        else:
            hall = int(candidates[rng.integers(len(candidates))])
            atoms = _try_symmetric(counts, place, minsep, volume, groups.group(hall), options, rng)
            nops = groups.group(hall).n_ops
        if atoms is not None:
            atoms.info.update(target_volume=volume, hall_number=hall, n_symmops=nops)
            return atoms
    raise ImpossibleSeedError(
        f"could not place {_formula(counts)} with MINSEP {_minsep_text(symbols, minsep)} in "
        f"{vlo:.1f}-{vhi:.1f} A^3 after {options.max_attempts} attempts; lower MINSEP or raise the volume"
    )


def _formula(counts: Mapping[str, int]) -> str:
    return "".join(f"{s}{n}" for s, n in counts.items())


def _minsep_text(symbols: Sequence[str], minsep: np.ndarray) -> str:
    return " ".join(
        f"{a}-{b}={minsep[i, j]:.2f}" for i, a in enumerate(symbols) for j, b in enumerate(symbols) if j >= i
    )


def _check_packing(counts: Mapping[str, int], minsep: np.ndarray, options: RandomSeedOptions) -> None:
    """Raise at once when hard spheres of diameter (1 - overlap) * MINSEP cannot fit in the largest volume."""
    diameters = (1.0 - options.overlap) * np.diag(minsep)  # (S,)
    spheres = sum(n * math.pi / 6.0 * d**3 for n, d in zip(counts.values(), diameters, strict=True))
    vmax = options.volume_range(counts)[1]
    if spheres > MAX_PACKING_FRACTION * vmax:
        raise ImpossibleSeedError(
            f"impossible MINSEP for {_formula(counts)}: spheres of diameter MINSEP fill "
            f"{spheres / vmax:.0%} of the largest cell volume {vmax:.1f} A^3 (the densest packing fills 74%)"
        )


# ----------------------------------------------------------------------------------- geometry


def _image_shifts(cell: np.ndarray, cutoff: float) -> np.ndarray:
    """Cartesian lattice translations (K, 3) that can bring two atoms within ``cutoff``; row 0 is zero."""
    heights = 1.0 / np.linalg.norm(np.linalg.inv(cell), axis=0)  # (3,) plane spacings
    reach = np.ceil(cutoff / heights).astype(int)
    ranges = [range(-r, r + 1) for r in reach]
    shifts = np.array(sorted(itertools.product(*ranges), key=lambda n: sum(abs(x) for x in n)), dtype=float)
    return shifts @ cell  # (K, 3)


def _distances(points: np.ndarray, others: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Shortest periodic distances (P, M) between Cartesian ``points`` (P, 3) and ``others`` (M, 3)."""
    diff = others[None, :, None, :] - points[:, None, None, :] + shifts[None, None, :, :]  # (P, M, K, 3)
    return np.sqrt(np.min(np.einsum("pmkx,pmkx->pmk", diff, diff), axis=2))


def _self_clash(cell: np.ndarray, shifts: np.ndarray, limit: float) -> bool:
    """True when the shortest lattice translation is below ``limit`` (an atom would meet its image)."""
    return bool(np.min(np.linalg.norm(shifts[1:], axis=1)) < limit) if len(shifts) > 1 else False


def random_cell(volume: float, *, options: RandomSeedOptions, rng: np.random.Generator, system: str = "triclinic"):
    """A random 3x3 cell (rows are vectors) of ``volume`` in the given crystal system, or None if too distorted."""

    lo, hi = options.angle_range
    lengths = np.exp(rng.uniform(0.0, math.log(options.max_length_ratio), size=3))
    angles = rng.uniform(lo, hi, size=3)
    if system == "monoclinic":
        angles[[0, 2]] = 90.0
    elif system in ("orthorhombic", "tetragonal", "cubic"):
        angles[:] = 90.0
    elif system == "hexagonal":
        angles[:] = (90.0, 90.0, 120.0)
    if system in ("tetragonal", "hexagonal"):
        lengths[1] = lengths[0]
    elif system == "cubic":
        lengths[:] = 1.0
    if lengths.max() / lengths.min() > options.max_length_ratio:
        return None
    cos = np.cos(np.radians(angles))
    factor = 1.0 - np.sum(cos**2) + 2.0 * np.prod(cos)
    if factor <= 0 or math.sqrt(factor) < options.min_cell_factor:
        return None
    cell = cellpar_to_cell(np.concatenate([lengths, angles]))
    return cell * (volume / abs(np.linalg.det(cell))) ** (1.0 / 3.0)


# ----------------------------------------------------------------------------------- P1 seeds


def _try_p1(counts, minsep, place, accept, volume, options, rng) -> Atoms | None:
    """One attempt at a P1 structure; None when the cell or the placement fails."""
    cell = np.array(options.cell) if options.cell is not None else random_cell(volume, options=options, rng=rng)
    if cell is None:
        return None
    shifts = _image_shifts(cell, float(minsep.max()))
    if _self_clash(cell, shifts, float(np.max(np.diag(place)))):
        return None
    species = np.repeat(np.arange(len(counts)), list(counts.values()))  # (N,)
    species = species[rng.permutation(len(species))]
    positions = np.zeros((0, 3))
    for i, s in enumerate(species):
        for _ in range(options.tries_per_atom):
            trial = rng.random(3) @ cell  # (3,)
            if i == 0 or np.all(_distances(trial[None], positions, shifts)[0] >= place[s, species[:i]]):
                positions = np.vstack([positions, trial])
                break
        else:
            return None
    if options.slack > 0 or options.overlap > 0:
        positions = _push(positions, species, cell, shifts, minsep, accept, options.push_steps)
        if positions is None:
            return None
    symbols = list(counts)
    atoms = Atoms([symbols[s] for s in species], positions=positions, cell=cell, pbc=True)
    atoms.wrap()
    if options.compact:
        niggli_reduce(atoms)
    return atoms


def _push(positions, species, cell, shifts, minsep, accept, steps) -> np.ndarray | None:
    """Move overlapping atoms apart (soft spheres of diameter MINSEP); None if still below ``accept``."""
    target = minsep[species][:, species]  # (N, N)
    floor = accept[species][:, species]  # (N, N)
    n = len(positions)
    self_pair = np.eye(n, dtype=bool)[:, :, None] & (np.arange(len(shifts)) == 0)[None, None, :]  # (N, N, K)
    for _ in range(steps + 1):
        vec = positions[None, :, None, :] - positions[:, None, None, :] + shifts[None, None]  # (N, N, K, 3)
        dist = np.linalg.norm(vec, axis=-1)  # (N, N, K)
        dist[self_pair] = np.inf
        if np.all(dist.min(axis=2) >= floor - 1e-9):
            return positions
        overlap = np.clip(target[:, :, None] - dist, 0.0, None)  # (N, N, K)
        push = -(overlap / np.maximum(dist, 1e-6))[..., None] * vec  # (N, N, K, 3) away from neighbours
        positions = positions + 0.5 * push.sum(axis=(1, 2))
    return None


# ----------------------------------------------------------------------------------- symmetric seeds


def _try_symmetric(counts, place, minsep, volume, group: SpaceGroup, options, rng) -> Atoms | None:
    """One attempt at a structure with ``group``'s operations; None when placement fails."""
    cell = random_cell(volume, options=options, rng=rng, system=group.system)
    if cell is None:
        return None
    shifts = _image_shifts(cell, float(minsep.max()))
    if _self_clash(cell, shifts, float(np.max(np.diag(place)))):
        return None
    frac = np.zeros((0, 3))
    species: list[int] = []
    order = list(range(len(counts)))
    rng.shuffle(order)
    for s in order:
        remaining = list(counts.values())[s]
        while remaining > 0:
            for _ in range(options.tries_per_atom):
                delta = 0.0 if rng.random() < 0.5 else float(rng.uniform(0.0, 0.3))
                orbit = group.orbit(group.snap(rng.random(3), delta))  # (m, 3)
                m = len(orbit)
                if m > remaining or not representable(remaining - m, group.multiplicities):
                    continue
                cart = orbit @ cell
                inner = _distances(cart, cart, shifts)  # (m, m)
                np.fill_diagonal(inner, np.inf)
                if np.any(inner < place[s, s]):
                    continue
                if len(frac) and np.any(_distances(cart, frac @ cell, shifts) < place[s, np.array(species)][None]):
                    continue
                frac = np.vstack([frac, orbit])
                species += [s] * m
                remaining -= m
                break
            else:
                return None
    positions = frac @ cell
    if options.slack > 0 or options.overlap > 0:  # as for P1: push apart, reject below the floor
        accept = (1.0 - options.overlap) * minsep
        positions = _push(positions, np.array(species), cell, shifts, minsep, accept, options.push_steps)
        if positions is None:
            return None
    symbols = list(counts)
    atoms = Atoms([symbols[s] for s in species], positions=positions, cell=cell, pbc=True)
    atoms.wrap()
    return atoms


# ----------------------------------------------------------------------------------- the source


#: The symmetry-operation range of the ``random-sym`` source (AIRSS practice: ``#SYMMOPS=2-4``).
RANDOM_SYM_SYMMOPS = (2, 4)


@dataclass
class RandomSeedSource:
    """:class:`~ase_unimat.search.seeds.SeedSource` of random AIRSS-like seeds.

    Parameters
    ----------
    options
        Build directives (AIRSS seed-file semantics); defaults give P1 seeds from covalent radii.
    name
        Source name recorded in each seed (``"random"``, or ``"cell"`` for seeds of a ``.cell`` file).
    """

    options: RandomSeedOptions = field(default_factory=RandomSeedOptions)
    name: str = "random"
    p1_fallback: bool = False
    _groups: SpaceGroupLibrary = field(default_factory=SpaceGroupLibrary, init=False, repr=False)

    def make(self, counts: Mapping[str, int], indices: Sequence[int], *, run_seed: int) -> list[Seed]:
        """Seed ``k`` is built from ``seed_rng(run_seed, name, k)`` alone.

        With ``p1_fallback``, a composition that no space group of the ``symmops`` range can hold
        (no orbits of those sizes add up to its counts) gets P1 seeds instead of an error, marked
        ``info["symmetry_fallback"] = True`` (what an AIRSS user does by hand: drop ``#SYMMOPS``).
        """
        options = self.options
        if self.p1_fallback and options.symmops not in (None, (1, 1)):
            if not self._groups.candidates(list(counts.values()), options.symmops):
                options = replace(options, symmops=None)
        seeds = []
        for k in indices:
            rng = seed_rng(run_seed, self.name, k)
            atoms = random_structure(counts, options=options, rng=rng, groups=self._groups)
            if options is not self.options:
                atoms.info["symmetry_fallback"] = True
            seeds.append(make_seed(atoms, counts, self.name, k, run_seed=run_seed))
        return seeds
