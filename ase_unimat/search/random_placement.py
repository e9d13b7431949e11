"""Placing atoms in a random cell under MINSEP: the cell, random sequential addition, the soft-sphere push.

:func:`random_cell` draws a cell of a crystal system and volume; :func:`try_p1` and
:func:`try_symmetric` make one attempt at a P1 or a symmetric structure (orbits snapped onto special
positions) and return None when it fails, so that :func:`~ase_unimat.search.random_seeds.random_structure`
retries with a fresh cell. Distances include periodic images (an atom's own too); the push moves
overlapping atoms apart pairwise, which keeps a symmetric structure symmetric.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from ase import Atoms
from ase.build import niggli_reduce
from ase.geometry import cellpar_to_cell

from ase_unimat.search.random_seed_options import RandomSeedOptions
from ase_unimat.search.spacegroups import SpaceGroup, representable

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


def try_p1(counts, minsep, place, accept, volume, options, rng) -> Atoms | None:
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


def try_symmetric(counts, place, minsep, volume, group: SpaceGroup, options, rng) -> Atoms | None:
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
