"""Seed source of prototype-substitution templates (see :mod:`ase_unimat.templates` for the rules).

Seed ``k`` is the ``k``-th candidate of the ranked, deduplicated list. Past the end of the list the
candidates cycle (``k mod n``), each repeat perturbed so it is a new starting point: a random
symmetric strain with entries of standard deviation ``strain`` and Gaussian displacements of
``rattle`` Angstrom, both from ``seed_rng(run_seed, "template", k)``. Seeds within the list are the
substituted templates exactly, so the first ``n`` seeds do not depend on ``run_seed``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ase_unimat.search.seeds import Seed, make_seed, seed_rng


@dataclass
class TemplateSeedSource:
    """:class:`~ase_unimat.search.seeds.SeedSource` of substituted reference structures.

    Parameters
    ----------
    reference
        A ``TemplateIndex``, a UniMat HDF5 file, a folder of CIFs, or None for the bundled model's
        training set. Loaded on the first ``make``.
    exclude_ids
        Reference ``material_id`` values never used as templates (leave-one-out benchmarks).
    strain, rattle
        Perturbation of repeated candidates (relative strain, Angstrom).
    """

    reference: Any = None
    exclude_ids: Iterable[str] = ()
    strain: float = 0.03
    rattle: float = 0.05
    name: str = "template"
    _index: Any = field(default=None, init=False, repr=False)
    _cache: dict = field(default_factory=dict, init=False, repr=False)

    def index(self):
        """The reference :class:`~ase_unimat.templates.TemplateIndex` (loaded once)."""
        if self._index is None:
            from ase_unimat.templates import TemplateIndex

            self._index = TemplateIndex.load(self.reference if not isinstance(self.reference, str) else Path(self.reference))
        return self._index

    def candidates(self, counts: Mapping[str, int]) -> list:
        """Ranked candidates for ``counts`` (cached); raises ``NoTemplateError`` when none fit."""
        key = tuple(sorted(counts.items()))
        if key not in self._cache:
            self._cache[key] = self.index().candidates(counts, exclude_ids=set(self.exclude_ids))
        return self._cache[key]

    def make(self, counts: Mapping[str, int], indices: Sequence[int], *, run_seed: int) -> list[Seed]:
        """Seed ``k``: candidate ``k mod n``, perturbed when ``k >= n``."""
        candidates = self.candidates(counts)
        seeds = []
        for k in indices:
            candidate = candidates[int(k) % len(candidates)]
            atoms = candidate.atoms.copy()
            cycle = int(k) // len(candidates)
            if cycle > 0:
                rng = seed_rng(run_seed, self.name, k)
                eps = rng.normal(0.0, self.strain, size=(3, 3))
                eps = 0.5 * (eps + eps.T)
                atoms.set_cell(atoms.cell[:] @ (np.eye(3) + eps), scale_atoms=True)
                atoms.positions += rng.normal(0.0, self.rattle, size=atoms.positions.shape)
                atoms.wrap()
            seeds.append(make_seed(atoms, counts, self.name, k, run_seed=run_seed, template_rank=int(k) % len(candidates),
                                   template_cycle=cycle, template_duplicates=candidate.n_duplicates))
        return seeds
