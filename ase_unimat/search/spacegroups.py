"""The space groups random seeds may use: spglib's Hall settings as Wyckoff-like orbits, and the crystal system of a number.

:class:`SpaceGroupLibrary` builds, once per group, the orbits of a group's special and general
positions (:class:`SpaceGroup`), so that :mod:`ase_unimat.search.random_seeds` can place ``n``
atoms of an element on orbits whose multiplicities sum to ``n``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import spglib

_SYSTEMS = ((2, "triclinic"), (15, "monoclinic"), (74, "orthorhombic"), (142, "tetragonal"), (194, "hexagonal"))


def crystal_system(number: int) -> str:
    """Lattice family of a space-group number (trigonal groups in hexagonal axes)."""
    for last, name in _SYSTEMS:
        if number <= last:
            return name
    return "cubic"


@dataclass
class SpaceGroup:
    """Operations of one space group in its standard (conventional) setting."""

    hall_number: int
    number: int
    rotations: np.ndarray  # (n_ops, 3, 3) int, acting on fractional column vectors
    translations: np.ndarray  # (n_ops, 3)
    multiplicities: frozenset[int]  # orbit sizes found by sampling special and general positions

    @property
    def n_ops(self) -> int:
        return len(self.rotations)

    @property
    def system(self) -> str:
        return crystal_system(self.number)

    def orbit(self, point: np.ndarray, *, tol: float = 1e-4) -> np.ndarray:
        """Distinct images (m, 3) of a fractional point, wrapped into [0, 1)."""
        images = np.mod(self.rotations @ point + self.translations, 1.0)  # (n_ops, 3)
        offset = (images[:, None, :] - images[None, :, :] + 0.5) % 1.0 - 0.5  # (n_ops, n_ops, 3)
        same = np.max(np.abs(offset), axis=2) <= tol  # (n_ops, n_ops)
        return images[~np.tril(same, k=-1).any(axis=1)]

    def snap(self, point: np.ndarray, delta: float) -> np.ndarray:
        """Move ``point`` onto the point fixed by the operations that map it within ``delta`` of itself."""
        return self.snap_many(point[None], np.array([delta]))[0]

    def snap_many(self, points: np.ndarray, deltas: np.ndarray) -> np.ndarray:
        """:meth:`snap` for points (P, 3) with their own ``deltas`` (P,)."""
        for _ in range(4):
            images = np.einsum("nij,pj->pni", self.rotations, points) + self.translations  # (P, n_ops, 3)
            offset = (images - points[:, None, :] + 0.5) % 1.0 - 0.5  # (P, n_ops, 3) nearest-image offsets
            near = np.max(np.abs(offset), axis=2) <= deltas[:, None]  # (P, n_ops); identity always near
            points = points + np.einsum("pn,pni->pi", near, offset) / near.sum(axis=1, keepdims=True)
        return np.mod(points, 1.0)

    def orbit_sizes(self, points: np.ndarray, *, grid: int = 10000) -> np.ndarray:
        """Number of distinct images (P,) of fractional points (P, 3), compared on a 1/``grid`` mesh."""
        images = np.einsum("nij,pj->pni", self.rotations, points) + self.translations  # (P, n, 3)
        cells = np.mod(np.rint(images * grid).astype(np.int64), grid)  # (P, n, 3)
        keys = np.sort((cells[..., 0] * grid + cells[..., 1]) * grid + cells[..., 2], axis=1)  # (P, n)
        return 1 + np.count_nonzero(np.diff(keys, axis=1), axis=1)


class SpaceGroupLibrary:
    """Space groups (one standard setting each) and their orbit sizes, computed on first use."""

    def __init__(self, *, samples: int = 400, seed: int = 0) -> None:
        self._samples = samples
        self._seed = seed
        self._groups: dict[int, SpaceGroup] = {}
        self._hall_of_number: dict[int, int] | None = None
        self._n_ops: dict[int, int] = {}
        self._candidates: dict[tuple, list[int]] = {}

    def hall_numbers(self) -> dict[int, int]:
        """Space-group number -> the Hall number of its default setting."""
        if self._hall_of_number is None:
            first: dict[int, int] = {}
            with warnings.catch_warnings():  # spglib 2.x deprecation notices about its error handling
                warnings.simplefilter("ignore", DeprecationWarning)
                for hall in range(1, 531):
                    first.setdefault(int(spglib.get_spacegroup_type(hall).number), hall)
            self._hall_of_number = first
        return self._hall_of_number

    def group(self, hall: int) -> SpaceGroup:
        """The :class:`SpaceGroup` of a Hall number."""
        if hall not in self._groups:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                ops = spglib.get_symmetry_from_database(hall)
                number = int(spglib.get_spacegroup_type(hall).number)
            group = SpaceGroup(hall, number, np.asarray(ops["rotations"]), np.asarray(ops["translations"]), frozenset())
            rng = np.random.default_rng([self._seed, hall])
            sizes = {group.n_ops}
            chunk = max(1, 20000 // group.n_ops)
            for start in range(0, self._samples, chunk):
                m = min(chunk, self._samples - start)
                points = group.snap_many(rng.random((m, 3)), rng.uniform(0.0, 0.3, size=m))
                sizes.update(int(x) for x in group.orbit_sizes(points))
            group.multiplicities = frozenset(sizes)
            self._groups[hall] = group
        return self._groups[hall]

    def candidates(self, counts: Sequence[int], symmops: tuple[int, int]) -> list[int]:
        """Hall numbers whose operation count is in ``symmops`` and whose orbits can add up to ``counts``."""
        key = (tuple(sorted(counts)), tuple(symmops))
        if key not in self._candidates:
            out = []
            for _number, hall in sorted(self.hall_numbers().items()):
                if hall not in self._n_ops:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", DeprecationWarning)
                        self._n_ops[hall] = len(spglib.get_symmetry_from_database(hall)["rotations"])
                if not symmops[0] <= self._n_ops[hall] <= symmops[1]:
                    continue
                if all(representable(n, self.group(hall).multiplicities) for n in counts):
                    out.append(hall)
            self._candidates[key] = out
        return self._candidates[key]


def representable(n: int, parts: frozenset[int]) -> bool:
    """Whether ``n`` is a sum of (repeatable) ``parts``."""
    reachable = np.zeros(n + 1, dtype=bool)
    reachable[0] = True
    for total in range(1, n + 1):
        reachable[total] = any(p <= total and reachable[total - p] for p in parts)
    return bool(reachable[n])
