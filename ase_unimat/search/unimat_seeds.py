"""Seed source backed by the UniMat diffusion model (:func:`ase_unimat.generate.generate`).

Seed ``k`` is ``generate(counts, seeds=[derive_seed(run_seed, "unimat", k)])``: every sample has its
own seed in ``generate``, so a seed does not depend on which other indices share its batch. A
composition the model cannot build (more than ``L`` atoms of one element, an element it never saw)
raises :class:`~ase_unimat.search.seeds.NoSeedsForFormula`, so mixed runs fall back to the others.

With ``start="template"`` (the ``unimat-template`` source), seed ``k`` starts the reverse diffusion
from template seed ``k`` (:class:`~ase_unimat.search.template_seeds.TemplateSeedSource`: the
``k``-th prototype-substitution candidate) noised to time ``strength``, so the model rebuilds the
template's details for the new chemistry; a composition with no template falls back to plain
sampling (recorded in the seed's ``unimat_start``).
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
    start
        ``"noise"`` (plain sampling) or ``"template"`` (denoise noised templates, see above).
    strength
        Noise level (diffusion time in (0, 1]) the templates are noised to when ``start="template"``.
    template_reference, template_options
        The templates' reference (see ``TemplateSeedSource``; None: the bundled set) and options.
    """

    model: Any = None
    steps: int | None = None
    guidance: float | None = None
    sampler: str = "ancestral"
    device: str = "auto"
    batch_size: int = 64
    start: str = "noise"
    strength: float = 0.5
    template_reference: Any = None
    template_options: Mapping[str, Any] | None = None
    name: str = "unimat"
    _net: Any = field(default=None, init=False, repr=False)
    _templates: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.start not in ("noise", "template"):
            raise SeedSourceError(f"unknown UniMat start {self.start!r}; choose 'noise' or 'template'")
        if not 0.0 < self.strength <= 1.0:
            raise SeedSourceError(f"UniMat start strength must be in (0, 1], got {self.strength}")

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
        starts, origin = self._starts(counts, indices, run_seed)
        try:
            structures = generate(
                dict(counts), seeds=sample_seeds, model=self.network(), guidance=self.guidance, steps=self.steps,
                sampler=self.sampler, device=self.device, batch_size=self.batch_size, start=starts,
                strength=self.strength if starts is not None else 1.0,
            )
        except FormulaError as err:
            raise NoSeedsForFormula(f"the UniMat model cannot build {formula_label(counts)}: {err}") from None
        seeds = []
        for k, atoms in zip(indices, structures, strict=True):
            built = {s: atoms.get_chemical_symbols().count(s) for s in counts}
            if built != dict(counts) or len(atoms) != sum(counts.values()):
                raise SeedSourceError(f"UniMat sample {k} has composition {atoms.get_chemical_formula()}, not "
                                      f"{formula_label(counts)}")
            info = {key: atoms.info[key] for key in ("model", "sampler", "steps", "guidance", "strength")
                    if key in atoms.info}  # fmt: skip
            info["start"] = origin[k]
            seeds.append(make_seed(atoms, counts, self.name, k, run_seed=run_seed,
                                   **{f"unimat_{key}": v for key, v in info.items()}))
        return seeds

    def _starts(self, counts: Mapping[str, int], indices: Sequence[int], run_seed: int) -> tuple[list | None, dict]:
        """Starting structures (None: noise) and, per index, where each sample started."""
        if self.start == "noise":
            return None, {k: "noise" for k in indices}
        from ase_unimat.search.template_seeds import TemplateSeedSource

        if self._templates is None:
            self._templates = TemplateSeedSource(reference=self.template_reference, **dict(self.template_options or {}))
        try:
            templates = self._templates.make(counts, indices, run_seed=run_seed)
        except NoSeedsForFormula:
            return None, {k: "noise (no template)" for k in indices}
        origin = {}
        for k, seed in zip(indices, templates, strict=True):
            info = seed.atoms.info
            origin[k] = f"template {info.get('template_id', '?')} rank {info.get('template_rank')} cycle {info.get('template_cycle')}"
        return [seed.atoms for seed in templates], origin
