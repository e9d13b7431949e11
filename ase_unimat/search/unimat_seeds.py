"""Seed source backed by the UniMat diffusion model (:func:`ase_unimat.generate.generate`).

Seed ``k`` is ``generate(counts, seeds=[derive_seed(run_seed, "unimat", k)])``: every sample has its
own seed in ``generate``, so a seed does not depend on which other indices share its batch. A
composition the model cannot build (more than ``L`` atoms of one element, an element it never saw)
raises :class:`~ase_unimat.search.seeds.NoSeedsForFormula`, so mixed runs fall back to the others.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ase_unimat.search.seeds import NoSeedsForFormula, Seed, SeedSourceError, derive_seed, formula_label, make_seed


@dataclass
class UniMatSeedSource:
    """:class:`~ase_unimat.search.seeds.SeedSource` of UniMat samples.

    Parameters
    ----------
    model
        Model object, checkpoint path or model name; None for the bundled default. Loaded once.
    steps, guidance, sampler
        Sampler settings (None: the model's defaults).
    device
        ``"auto"``, ``"cpu"``, ``"cuda"``.
    batch_size
        Samples drawn together (does not change any sample).
    """

    model: Any = None
    steps: int | None = None
    guidance: float | None = None
    sampler: str = "ancestral"
    device: str = "auto"
    batch_size: int = 64
    name: str = "unimat"
    _net: Any = field(default=None, init=False, repr=False)

    def network(self):
        """The loaded model (loaded on first use)."""
        if self._net is None:
            from ase_unimat.generate import load_model

            self._net = load_model(self.model, device=self.device)
        return self._net

    def make(self, counts: Mapping[str, int], indices: Sequence[int], *, run_seed: int) -> list[Seed]:
        """One generated structure per index, seeded by ``derive_seed(run_seed, "unimat", k)``."""
        from ase_unimat.formula import FormulaError
        from ase_unimat.generate import generate

        indices = [int(k) for k in indices]
        if not indices:
            return []
        sample_seeds = [derive_seed(run_seed, self.name, k) for k in indices]
        try:
            structures = generate(
                dict(counts), seeds=sample_seeds, model=self.network(), guidance=self.guidance, steps=self.steps,
                sampler=self.sampler, device=self.device, batch_size=self.batch_size,
            )
        except FormulaError as err:
            raise NoSeedsForFormula(f"the UniMat model cannot build {formula_label(counts)}: {err}") from None
        seeds = []
        for k, atoms in zip(indices, structures, strict=True):
            built = {s: atoms.get_chemical_symbols().count(s) for s in counts}
            if built != dict(counts) or len(atoms) != sum(counts.values()):
                raise SeedSourceError(f"UniMat sample {k} has composition {atoms.get_chemical_formula()}, not "
                                      f"{formula_label(counts)}")
            info = {key: atoms.info[key] for key in ("model", "sampler", "steps", "guidance") if key in atoms.info}
            seeds.append(make_seed(atoms, counts, self.name, k, run_seed=run_seed,
                                   **{f"unimat_{key}": v for key, v in info.items()}))
        return seeds
