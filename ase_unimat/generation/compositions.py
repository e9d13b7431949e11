"""Compositions for de novo sampling: drawn from a model's training distribution, or made of given elements.

>>> prior = CompositionPrior.from_model(model)                      # doctest: +SKIP
>>> prior.draw(seed=7)                                              # doctest: +SKIP
DrawnComposition(counts={'Li': 2, 'O': 1}, info={'composition_source': 'prior', ...})

Two ways of drawing, both reproducible from the sample's seed alone:

- **prior** (no elements given): one composition of the training set, drawn uniformly from the
  model's ``prior_compositions`` buffer (the distinct cell compositions of its training data), or,
  for a model without that buffer, from the compositions of its reference dataset (every training
  cell, so frequent compositions weigh more).
- **elements** (``elements="Li,Fe,P,O"``): every sample holds exactly these elements. A training
  composition with that many distinct elements is drawn as above; its per-element counts (the
  stoichiometry, e.g. 1-1-1-4) are kept and handed to the given elements in a random order
  (LiFePO4, Li4FePO, ...). So the cell sizes and stoichiometries follow the training distribution.

``charge_balanced=True`` keeps only compositions that pass SMACT's charge-neutrality and
electronegativity test (:func:`ase_unimat.core.chemistry.composition_validity`, CDVAE's definition; metals
only count as valid), drawing again up to ``max_tries`` times. It is off by default: training
compositions are real compounds (about 90 % pass), while element permutations often do not (for
Li,Fe,P,O about a third pass).

Each draw records in ``info`` how it was made: ``composition_source`` (``"prior"`` or
``"elements"``), ``composition_prior`` (``"model"`` or the reference file), ``charge_balanced``
(whether the filter was on) and ``composition_tries`` (draws until one was accepted).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ase_unimat.core.chemistry import composition_validity
from ase_unimat.core.formula import FormulaError, counts_from_grid
from ase_unimat.core.periodic_table import cell_of, symbol_to_z

#: Distinguishes the composition stream of a seed from its other random streams.
COMPOSITION_STREAM = 0xC0
DEFAULT_MAX_TRIES = 2000


@dataclass(frozen=True)
class DrawnComposition:
    """One drawn composition (``{symbol: count}`` of the cell) and how it was drawn."""

    counts: dict[str, int]
    info: dict[str, Any] = field(default_factory=dict)


def parse_elements(elements: str | Sequence[str]) -> list[str]:
    """``"Li,Fe,P,O"`` (commas or spaces) or ``["Li", "Fe"]`` as a list of distinct, known symbols."""
    items = elements.replace(",", " ").split() if isinstance(elements, str) else [str(e).strip() for e in elements]
    if not items:
        raise FormulaError("no elements given")
    symbols: list[str] = []
    for item in items:
        try:
            symbol_to_z(item)
        except (KeyError, ValueError):
            raise FormulaError(f"unknown element symbol {item!r}") from None
        if item in symbols:
            raise FormulaError(f"element {item} given twice")
        symbols.append(item)
    return symbols


def stream_rng(seed: int, stream: int) -> np.random.Generator:
    """The generator of one sample's ``stream`` (composition, space group, ...) from its seed."""
    return np.random.default_rng([int(seed) % 2**63, stream])


class CompositionPrior:
    """Training compositions of a model, to draw de novo compositions from.

    Parameters
    ----------
    grids
        ``(P, 9, 18)`` atom counts per element cell, one row per training composition.
    source
        Where they come from (``"model"`` or a file name), recorded in each draw's ``info``.
    seen
        ``(9, 18)`` bool: element cells the model has seen (None: every element of ``grids``).
    """

    def __init__(self, grids: np.ndarray, *, source: str, seen: np.ndarray | None = None) -> None:
        grids = np.asarray(grids)
        if grids.ndim != 3 or len(grids) == 0:
            raise ValueError("a composition prior needs at least one (9, 18) composition")
        self.grids = grids.astype(np.int64)
        self.source = source
        self.seen = (self.grids > 0).any(0) if seen is None else np.asarray(seen, dtype=bool)
        self.n_elements = (self.grids > 0).reshape(len(grids), -1).sum(1)
        self._valid: dict[tuple, bool] = {}

    @classmethod
    def from_model(cls, model, *, reference: str | Path | None = None) -> CompositionPrior:
        """The model's ``prior_compositions`` buffer, else the compositions of ``reference`` (HDF5)."""
        seen = model.seen_elements.detach().cpu().numpy()
        prior = model.prior_compositions.detach().cpu().numpy()
        if len(prior):
            return cls(prior, source="model", seen=seen if seen.any() else None)
        if reference is None:
            raise ValueError("this model has no composition prior and no reference dataset: give a formula")
        import h5py

        with h5py.File(reference, "r") as h5:
            grids = h5["composition"][:]
        return cls(grids, source=str(reference), seen=seen if seen.any() else None)

    def check_elements(self, symbols: Sequence[str]) -> None:
        """Refuse elements the model never saw, and more elements than any training composition has."""
        unseen = [s for s in symbols if not self.seen[cell_of(symbol_to_z(s))]]
        if unseen:
            raise FormulaError(f"element(s) {', '.join(unseen)} never appeared in this model's training data")
        if not (self.n_elements == len(symbols)).any():
            raise FormulaError(f"no training composition has {len(symbols)} distinct elements")

    def draw(
        self,
        seed: int,
        *,
        elements: Sequence[str] | None = None,
        charge_balanced: bool = False,
        max_tries: int = DEFAULT_MAX_TRIES,
    ) -> DrawnComposition:
        """One composition for the sample with this seed (see the module docstring)."""
        rng = stream_rng(seed, COMPOSITION_STREAM)
        if elements is not None:
            elements = list(elements)
            self.check_elements(elements)
            rows = np.flatnonzero(self.n_elements == len(elements))
        else:
            rows = np.arange(len(self.grids))
        for tries in range(1, max_tries + 1):
            grid = self.grids[rows[rng.integers(len(rows))]]
            if elements is None:
                counts = counts_from_grid(grid)
            else:
                pattern = grid[grid > 0]
                counts = dict(zip((elements[i] for i in rng.permutation(len(elements))), map(int, pattern), strict=True))
            if not charge_balanced or self._balanced(counts):
                info = {"composition_source": "prior" if elements is None else "elements",
                        "composition_prior": self.source, "charge_balanced": bool(charge_balanced),
                        "composition_tries": tries}  # fmt: skip
                return DrawnComposition(counts, info)
        what = ", ".join(elements) if elements is not None else "the training compositions"
        raise FormulaError(f"no charge-balanced composition of {what} in {max_tries} draws")

    def _balanced(self, counts: dict[str, int]) -> bool:
        key = tuple(sorted(counts.items()))
        if key not in self._valid:
            self._valid[key] = composition_validity(counts)
        return self._valid[key]
