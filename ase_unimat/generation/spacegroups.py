"""Space groups for the ``spacegroup="auto"`` condition: the training data's distribution per stoichiometry.

A space-group model (``model.spacegroup_condition``) samples better when told which symmetry to
aim for. ``"auto"`` draws one per sample from the space groups of the training cells with the same
stoichiometry, backing off when there are fewer than ``min_count`` of them:

1. ``stoichiometry``: the multiset of per-element counts of the cell (Mg4Si2O8 -> 2-4-8);
2. ``anonymous``: the reduced anonymous formula (Mg4Si2O8 and Mg2SiO4 -> 1-2-4, i.e. AB2C4);
3. ``natoms``: the number of atoms in the cell;
4. ``all``: every training cell.

The draw uses its own random stream of the sample's seed, so a structure is reproducible from its
seed alone. The data is any HDF5 file of the project's format with ``properties/spacegroup``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ase_unimat.generation.compositions import stream_rng

SPACEGROUP_STREAM = 0x5347
LEVELS = ("stoichiometry", "anonymous", "natoms", "all")


def stoichiometry_keys(counts: Mapping[str, int] | np.ndarray) -> tuple[tuple[int, ...], tuple[int, ...], int]:
    """(sorted per-element counts, the same reduced by their gcd, atom count) of a cell."""
    values = np.asarray(list(counts.values()) if isinstance(counts, Mapping) else counts, dtype=np.int64)
    values = np.sort(values[values > 0])
    if values.size == 0:
        raise ValueError("empty composition")
    full = tuple(int(v) for v in values)
    divisor = math.gcd(*full)
    return full, tuple(v // divisor for v in full), int(values.sum())


class SpacegroupPrior:
    """Empirical space-group distribution per stoichiometry of a set of training cells.

    Parameters
    ----------
    compositions
        ``(N, 9, 18)`` atom counts per element cell.
    spacegroups
        ``(N,)`` space-group numbers; rows outside 1-230 (missing) are left out.
    source
        Where the data came from (recorded in the draws).
    min_count
        Fewest cells a level needs before it is used instead of the next, coarser one.
    """

    def __init__(self, compositions: np.ndarray, spacegroups: np.ndarray, *, source: str = "",
                 min_count: int = 5) -> None:  # fmt: skip
        compositions = np.asarray(compositions)
        spacegroups = np.asarray(spacegroups)
        if len(compositions) != len(spacegroups):
            raise ValueError(f"{len(compositions)} compositions but {len(spacegroups)} space groups")
        keep = (spacegroups >= 1) & (spacegroups <= 230)
        if not keep.any():
            raise ValueError("no known space group in the data")
        self.source = source
        self.min_count = int(min_count)
        self.tables: dict[str, dict] = {level: {} for level in LEVELS}
        flat = compositions[keep].reshape(int(keep.sum()), -1)
        for row, number in zip(flat, spacegroups[keep].astype(int), strict=True):
            keys = (*stoichiometry_keys(row), None)
            for level, key in zip(LEVELS, keys, strict=True):
                self.tables[level].setdefault(key, Counter())[number] += 1

    @classmethod
    def from_hdf5(cls, path: str | Path, *, min_count: int = 5) -> SpacegroupPrior:
        """The prior of one dataset file (``composition`` and ``properties/spacegroup``)."""
        import h5py

        with h5py.File(path, "r") as h5:
            if "properties/spacegroup" not in h5:
                raise ValueError(f"{path} has no properties/spacegroup")
            return cls(h5["composition"][:], h5["properties/spacegroup"][:], source=str(path), min_count=min_count)

    def distribution(self, counts: Mapping[str, int]) -> tuple[np.ndarray, np.ndarray, str]:
        """(space-group numbers, their probabilities, the level used) for a cell of ``counts``."""
        keys = (*stoichiometry_keys(counts), None)
        for level, key in zip(LEVELS, keys, strict=True):
            table = self.tables[level].get(key)
            if table and (sum(table.values()) >= self.min_count or level == "all"):
                numbers = np.array(sorted(table))
                weights = np.array([table[n] for n in numbers], dtype=np.float64)
                return numbers, weights / weights.sum(), level
        raise AssertionError("the 'all' level always exists")  # pragma: no cover

    def draw(self, counts: Mapping[str, int], seed: int) -> tuple[int, str]:
        """(space group, level) for the sample of this seed and composition."""
        numbers, probs, level = self.distribution(counts)
        return int(stream_rng(seed, SPACEGROUP_STREAM).choice(numbers, p=probs)), level
