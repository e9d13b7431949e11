"""Seed source of prototype-substitution templates (see :mod:`ase_unimat.search.templates` for the rules).

Seed ``k`` is the ``k``-th candidate of the ranked, deduplicated list. Past the end of the list the
candidates cycle (``k mod n``), each repeat perturbed so it is a new starting point: a random
symmetric strain with entries of standard deviation ``strain`` and Gaussian displacements of
``rattle`` Angstrom, both from ``seed_rng(run_seed, "template", k)``. Seeds within the list are the
substituted templates exactly, so the first ``n`` seeds do not depend on ``run_seed``.

With ``ordered=True`` (the default) the list also holds ordered-substitution candidates
(:mod:`ase_unimat.search.ordered_templates`: orderings of two target elements on the sites of one element
of a parent with one element fewer), merged with the prototype-substitution ones by one rule,
(supercell factor, prior), where an ordered candidate's prior is its parent's plus the chemical
distance of the two elements sharing a site (prototype substitution first on a tie); either kind
alone is used when the other has none.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ase_unimat.core.formula import formula_label
from ase_unimat.search.ordered_templates import ordered_candidates
from ase_unimat.search.seeds import Seed, make_seed, seed_rng
from ase_unimat.search.templates import LazyCandidates, NoTemplateError, TemplateIndex


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
        """The reference :class:`~ase_unimat.search.templates.TemplateIndex` (loaded once)."""
        if self._index is None:
            self._index = TemplateIndex.load(self.reference if not isinstance(self.reference, str) else Path(self.reference))
        return self._index

    def candidates(self, counts: Mapping[str, int]) -> list:
        """Ranked candidates for ``counts`` (cached); raises ``NoTemplateError`` when none fit."""
        key = tuple(sorted(counts.items()))
        if key not in self._cache:
            try:
                found = self.index().candidates(counts, exclude_ids=set(self.exclude_ids))
            except NoTemplateError:
                if not self.ordered:
                    raise
                found = []
            if self.ordered:
                try:
                    derived = ordered_candidates(self.index(), counts, exclude_ids=set(self.exclude_ids))
                except NoTemplateError:
                    if not found:
                        raise NoTemplateError(f"no template for {formula_label(counts)}: neither prototype nor "
                                              "ordered substitution has a fitting reference structure") from None
                    derived = []
                found = MergedByPrior(found, derived)
            self._cache[key] = found
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


class MergedByPrior(LazyCandidates):
    """Two ranked candidate sequences merged by ``(supercell, prior)``: at each position the head with
    the smaller key is taken (the first sequence's on a tie); items are built only when reached."""

    def __init__(self, first: Sequence, second: Sequence) -> None:
        self._lists = (first, second)
        self._taken: list[tuple[int, int]] = []  # (which list, index in it) of each merged position
        self._heads = [0, 0]

    def __len__(self) -> int:
        return len(self._lists[0]) + len(self._lists[1])

    def _head_key(self, which: int) -> tuple[int, float] | None:
        items, head = self._lists[which], self._heads[which]
        if head >= len(items):
            return None
        return items[head].supercell, items[head].prior

    def _extend(self, upto: int) -> None:
        while len(self._taken) <= upto:
            first, second = self._head_key(0), self._head_key(1)
            which = 0 if second is None or (first is not None and first <= second) else 1
            self._taken.append((which, self._heads[which]))
            self._heads[which] += 1

    def _item(self, i: int):
        self._extend(i)
        which, j = self._taken[i]
        return self._lists[which][j]
