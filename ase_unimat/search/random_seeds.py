"""Our AIRSS-like random seeds: a random cell of the target volume, atoms placed under MINSEP.

How one seed is built (all randomness from the ``rng`` passed in):

1. **Volume.** ``V = volume_per_atom * natoms`` with ``volume_per_atom`` drawn uniformly from the
   given range (``#TARGVOL``/``#VARVOL``), or from the per-element volume table (:mod:`.volume`) when none is given;
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

This module is the procedure (:func:`random_structure`, its upfront checks and retries) and the seed
source; the directives are :class:`~ase_unimat.search.random_seed_options.RandomSeedOptions` (in
:mod:`~ase_unimat.search.random_seed_options`, re-exported here) and steps 2-4 live in
:mod:`~ase_unimat.search.random_placement`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from ase import Atoms

from ase_unimat.search.random_placement import random_cell, try_p1, try_symmetric
from ase_unimat.search.random_seed_options import RandomSeedOptions
from ase_unimat.search.seeds import NoSeedsForFormula, Seed, SeedSourceError, make_seed, seed_rng
from ase_unimat.search.spacegroups import SpaceGroupLibrary

__all__ = [
    "MAX_ATOMS",
    "MAX_PACKING_FRACTION",
    "RANDOM_SYM_SYMMOPS",
    "ImpossibleSeedError",
    "RandomSeedOptions",
    "RandomSeedSource",
    "random_cell",
    "random_structure",
]

#: Densest packing of equal spheres (fcc/hcp), the bound of the upfront MINSEP check.
MAX_PACKING_FRACTION = 0.7405
#: Most atoms in one random seed: placing and pushing are quadratic in the atom count.
MAX_ATOMS = 1000


class ImpossibleSeedError(SeedSourceError):
    """MINSEP, volume and composition that no random seed can satisfy."""


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
        Directives; ``None`` means all defaults (P1, volume from the per-element table, MINSEP from covalent radii).
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
            atoms = try_p1(counts, minsep, place, accept, volume, options, rng)
            hall, nops = 1, 1
        else:
            hall = int(candidates[rng.integers(len(candidates))])
            atoms = try_symmetric(counts, place, minsep, volume, groups.group(hall), options, rng)
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


# ----------------------------------------------------------------------------------- the source


#: The symmetry-operation range of the ``random-sym`` source (AIRSS practice: ``#SYMMOPS=2-4``).
RANDOM_SYM_SYMMOPS = (2, 4)


@dataclass
class RandomSeedSource:
    """:class:`~ase_unimat.search.seeds.SeedSource` of random AIRSS-like seeds.

    Parameters
    ----------
    options
        Build directives (AIRSS seed-file semantics); defaults give P1 seeds (volume from the per-element table, MINSEP from covalent radii).
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
