"""The search-efficiency benchmark's targets: the held-out ``mp_20/test`` structures a run searches for.

It owns :class:`Target` and the seeded draw of targets per size bin (:func:`held_out_targets`: reduced
formulas absent from all training data, distinct formulas, ``selection_seed``), and
:func:`default_overlap`, which names the targets a run with another selection seed shares with the
default run's draw.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from bench._search_efficiency_config import BINS, DEFAULT, BenchConfig


@dataclass
class Target:
    """One held-out structure to find."""

    material_id: str
    formula: str  # reduced formula
    counts: dict[str, int]  # the cell searched
    bin: str
    cif: str = field(repr=False)

    @property
    def natoms(self) -> int:
        return int(sum(self.counts.values()))


def held_out_targets(config: BenchConfig) -> list[Target]:
    """The fixed, seeded list of held-out test structures per size bin.

    Every bin of ``BINS`` is drawn, in its own order, from one seeded generator, and only the bins of
    ``config.bins`` are kept (in that order): a bin's targets are the same whichever other bins a run
    asks for (``--bins 7-12`` searches the 7-12 targets of the default run).
    """
    from ase_unimat.evaluation.reference import TRAINING_SOURCES, load_reference_records

    test = load_reference_records(config.data_dir, sources=("mp_20/test",), max_atoms=20)
    training = load_reference_records(config.data_dir, sources=TRAINING_SOURCES, max_atoms=None)
    seen = {r.reduced_formula for r in training}
    rng = np.random.default_rng(config.selection_seed)
    drawn: dict[str, list[Target]] = {}
    for name, (low, high) in BINS.items():
        by_formula: dict[str, Any] = {}
        for record in sorted(test, key=lambda r: r.material_id):
            formula = record.reduced_formula
            if low <= record.natoms <= high and formula not in seen and formula not in by_formula:
                by_formula[formula] = record
        candidates = list(by_formula.values())
        order = rng.permutation(len(candidates))
        drawn[name] = [
            Target(r.material_id, r.reduced_formula, dict(r.counts), name, r.cif)
            for r in (candidates[i] for i in order[: config.per_bin])
        ]
    return [target for name in config.bins for target in drawn[name]]


def default_overlap(config: BenchConfig, targets: Sequence[Target]) -> list[str]:
    """Material ids of ``targets`` that the default run also searches (none when ``config`` draws them alike)."""
    if config.selection_seed == DEFAULT.selection_seed:
        return []
    default_ids = {t.material_id for t in held_out_targets(replace(DEFAULT, data_dir=config.data_dir))}
    return sorted(t.material_id for t in targets if t.material_id in default_ids)

