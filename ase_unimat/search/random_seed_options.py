"""The directives of a random seed: :class:`RandomSeedOptions` (AIRSS seed-file semantics, our defaults).

MINSEP (one value, per pair, or from covalent radii), the target volume per atom or its range,
``SYMMOPS``, ``SLACK`` / ``OVERLAP``, ``#COMPACT``, a fixed cell, and the limits of the cell shape and
of the retries; checked when made (:class:`~ase_unimat.search.seeds.SeedSourceError` naming the
directive). How they are used is in :mod:`~ase_unimat.search.random_seeds`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from ase_unimat.search.seeds import SeedSourceError
from ase_unimat.search.volume import default_minsep, estimate_volume


@dataclass(frozen=True)
class RandomSeedOptions:
    """How random seeds are built (the directives of an AIRSS seed file, with our defaults)."""

    minsep: float | None = None  # default minimum separation (A) for pairs not in pair_minsep
    pair_minsep: Mapping[tuple[str, str], float] = field(default_factory=dict)  # ("A", "B") -> A
    volume_per_atom: tuple[float, float] | None = None  # A^3 per atom; None: estimate_volume
    volume_spread: float = 0.05  # relative spread when volume_per_atom is one value
    symmops: tuple[int, int] | None = None  # number of symmetry operations, inclusive range
    slack: float = 0.0
    overlap: float = 0.0
    compact: bool = False  # Niggli-reduce P1 cells (AIRSS #COMPACT)
    cell: tuple[tuple[float, ...], ...] | None = None  # fixed cell rows (AIRSS #FIX); P1 only
    packing: float | None = None  # None: per-element volume table; a number: covalent spheres x packing
    angle_range: tuple[float, float] = (60.0, 120.0)
    max_length_ratio: float = 3.0
    min_cell_factor: float = 0.5  # V / (a b c) below this is too flat
    max_attempts: int = 500
    tries_per_atom: int = 200
    push_steps: int = 200

    def __post_init__(self) -> None:
        numbers = [
            self.minsep if self.minsep is not None else 0.0,
            *self.pair_minsep.values(),
            *(self.volume_per_atom or ()),
        ]
        if not all(math.isfinite(float(v)) for v in numbers):
            raise SeedSourceError(
                f"MINSEP and volumes must be finite, got MINSEP {self.minsep}, "
                f"pairs {dict(self.pair_minsep)}, volume per atom {self.volume_per_atom}"
            )
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
