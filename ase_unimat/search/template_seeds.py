"""Seed source of prototype-substitution templates (see :mod:`ase_unimat.templates` for the rules).

Seed ``k`` is the ``k``-th candidate of the ranked, deduplicated list. Past the end of the list the
candidates cycle (``k mod n``), each repeat perturbed so it is a new starting point: a random
symmetric strain with entries of standard deviation ``strain`` and Gaussian displacements of
``rattle`` Angstrom, both from ``seed_rng(run_seed, "template", k)``. Seeds within the list are the
substituted templates exactly, so the first ``n`` seeds do not depend on ``run_seed``.

With ``ordered=True`` (the default) the list also holds ordered-substitution candidates
(:mod:`ase_unimat.ordered_templates`: orderings of two target elements on the sites of one element
of a parent with one element fewer), alternating with the prototype-substitution ones (those
first); either kind alone is used when the other has none.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ase_unimat.search.seeds import Seed, formula_label, make_seed, seed_rng


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
    ordered
        Also use ordered-substitution candidates (see above); False gives prototype substitution alone.
    """

    reference: Any = None
    exclude_ids: Iterable[str] = ()
    strain: float = 0.03
    rattle: float = 0.05
    ordered: bool = True
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
            from ase_unimat.templates import NoTemplateError

            try:
                exact = self.index().candidates(counts, exclude_ids=set(self.exclude_ids))
            except NoTemplateError:
                if not self.ordered:
                    raise
                exact, missing = [], True
            else:
                missing = False
            if not self.ordered:
                self._cache[key] = exact
            else:
                from ase_unimat.ordered_templates import ordered_candidates

                try:
                    derived = ordered_candidates(self.index(), counts, exclude_ids=set(self.exclude_ids))
                except NoTemplateError:
                    if missing:
                        raise NoTemplateError(f"no template for {formula_label(counts)}: neither prototype nor "
                                              "ordered substitution has a fitting reference structure") from None
                    derived = []
                self._cache[key] = Alternating(exact, derived)
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


class Alternating(Sequence):
    """Items of two ranked sequences taken in turn (``first[0], second[0], first[1], ...``), the rest
    of the longer one after the shorter runs out; items are read only when accessed."""

    def __init__(self, first: Sequence, second: Sequence) -> None:
        self._first, self._second = first, second

    def __len__(self) -> int:
        return len(self._first) + len(self._second)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if not -len(self) <= i < len(self):
            raise IndexError(f"candidate {i} out of range ({len(self)} candidates)")
        i %= len(self)
        shared = min(len(self._first), len(self._second))
        if i < 2 * shared:
            return (self._first, self._second)[i % 2][i // 2]
        longer = self._first if len(self._first) > shared else self._second
        return longer[i - shared]
