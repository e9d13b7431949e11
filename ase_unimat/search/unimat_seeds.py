"""Seed source backed by the UniMat diffusion model (:func:`ase_unimat.generation.generate`).

Seed ``k`` is ``generate(counts, seeds=[derive_seed(run_seed, "unimat", k)])``: every sample has its
own seed in ``generate``, so a seed does not depend on which other indices share its batch. A
composition the model cannot build (more than ``L`` atoms of one element, an element it never saw)
raises :class:`~ase_unimat.search.seeds.NoSeedsForFormula`, so mixed runs fall back to the others.

With ``start="template"`` (the ``unimat-template`` source), the reverse diffusion starts from
templates (:class:`~ase_unimat.search.template_seeds.TemplateSeedSource`: prototype and ordered substitution)
noised to a time ``strength`` in (0, 1], so the model rebuilds each template's details for the new
chemistry. Seed ``k`` starts from template seed ``k`` (candidate ``k mod n`` of the ``n`` ranked
candidates, in cycle ``k // n``) at level ``strength[min(cycle, m - 1)]`` of the ``m`` levels
(default ``(0.3, 0.5)``): the first pass over the candidates refines each one gently (it keeps the
template's arrangement), later passes explore around them more freely instead of the template
source's small random perturbations. A composition with no template falls back to plain sampling. The seed's ``unimat_start`` records
which template (or noise) it started from.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ase_unimat.core.formula import FormulaError, formula_label
from ase_unimat.core.geometry import atom_counts, shortest_distance
from ase_unimat.core.representation import decode, encode
from ase_unimat.generation import generate, load_model
from ase_unimat.generation.plan import reference_dataset
from ase_unimat.generation.spacegroups import SpacegroupPrior
from ase_unimat.model.bundled import model_reference
from ase_unimat.search.airss_io import spacegroup_number
from ase_unimat.search.seeds import NoSeedsForFormula, Seed, SeedSourceError, derive_seed, make_seed
from ase_unimat.search.symmetry import SymmetryError, project_onto_symmetry, symmetrized_cell, symmetry_operations
from ase_unimat.search.template_seeds import TemplateSeedSource
from ase_unimat.search.template_spacegroups import TemplateSpacegroupPrior
from ase_unimat.search.templates import TemplateIndex, default_reference
from ase_unimat.search.volume import estimate_volume

STARTS = ("noise", "template", "symmetry")
FIRST_PASSES = ("denoise", "volume", "symmetrize", "template")
VOLUMES = ("model", "table")


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
        ``"noise"`` (plain sampling), ``"template"`` (denoise noised templates, see above) or
        ``"symmetry"``: sample from noise while every step keeps the space-group operations of
        template ``k`` (its Wyckoff positions, not its coordinates:
        :mod:`ase_unimat.model.symmetry_constraint`), conditioned on its space group, the cell's
        metric averaged over its rotations at the end; ``strength`` does not apply, and of the
        ``first_pass`` options only ``"template"``.
    strength
        Noise level (diffusion time in (0, 1]) the templates are noised to when ``start="template"``;
        a tuple gives the level of each pass over the candidates (see the module docstring).
    template_reference, template_options
        The templates' reference (see ``TemplateSeedSource``; None: the bundled set) and options.
    first_pass
        What the first pass over the templates yields with ``start="template"``: ``"denoise"`` the
        denoised structure itself, ``"volume"`` the template's own arrangement and cell shape
        (symmetry intact) scaled to the volume of its denoised version, ``"symmetrize"`` the denoised
        structure averaged over the template's space group (see :mod:`ase_unimat.search.symmetry`),
        ``"template"`` the template itself (no model: the model's seeds are the later passes, which
        explore where the template source only perturbs). Later passes always use the model.
    template_min_atoms
        Cells with fewer atoms are sampled from noise even with ``start="template"``.
    spacegroup
        The condition of a space-group model: ``"templates"`` (see the module docstring), ``"auto"``,
        a number 1-230, or ``"none"``.
    volume
        The cell volume of samples drawn from noise: ``"model"`` as sampled, ``"table"`` scaled
        isotropically to the per-element volume estimate of random seeds
        (:func:`~ase_unimat.search.volume.estimate_volume`); samples inside a template's symmetry
        count as drawn from noise. Denoised templates keep theirs.
    min_distance
        A sample with two atoms closer than this (Angstrom; the relaxation's own collapse limit)
        is drawn again with fresh noise, up to 3 times (``generate(min_distance=...)``; the seed's
        ``unimat_redraws`` says how often); a seed still that close when it is finished (after the
        redraws and, with ``start="symmetry"``, the symmetrized cell) carries
        ``unimat_too_close = True``. With ``start="symmetry"`` such a seed (an orbit collapsed onto a
        special position, which every redraw inside the same operations can repeat) is first
        sampled once more from noise without the constraint, under the template's space group
        (``unimat_fallback`` says so). None keeps every sample as drawn.
    """

    model: Any = None
    steps: int | None = None
    guidance: float | None = None
    sampler: str = "ancestral"
    device: str = "auto"
    batch_size: int = 64
    start: str = "noise"
    strength: float | tuple[float, ...] = (0.3, 0.5)
    template_reference: Any = None
    template_options: Mapping[str, Any] | None = None
    first_pass: str = "denoise"
    template_min_atoms: int = 1
    spacegroup: int | str | None = "templates"
    volume: str = "model"
    min_distance: float | None = 0.5
    name: str = "unimat"
    _net: Any = field(default=None, init=False, repr=False)
    _templates: Any = field(default=None, init=False, repr=False)
    _spacegroup_prior: Any = field(default=None, init=False, repr=False)
    _indexes: dict = field(default_factory=dict, init=False, repr=False)  # resolved path -> TemplateIndex

    def __post_init__(self) -> None:
        if self.start not in STARTS:
            raise SeedSourceError(f"unknown UniMat start {self.start!r}; choose one of {', '.join(STARTS)}")
        if self.volume not in VOLUMES:
            raise SeedSourceError(f"unknown UniMat volume {self.volume!r}; choose one of {', '.join(VOLUMES)}")
        if self.first_pass not in FIRST_PASSES:
            raise SeedSourceError(f"unknown first pass {self.first_pass!r}; choose one of {', '.join(FIRST_PASSES)}")
        if not self.strengths or not all(0.0 < level <= 1.0 for level in self.strengths):
            raise SeedSourceError(f"UniMat start strength must be in (0, 1], got {self.strength}")
        if isinstance(self.spacegroup, str) and self.spacegroup.lower() not in ("templates", "auto", "none"):
            try:
                self.spacegroup = int(self.spacegroup)
            except ValueError:
                raise SeedSourceError(f"unknown UniMat space group {self.spacegroup!r}; choose templates, auto, "
                                      "none or a number 1-230") from None
        if isinstance(self.min_distance, str):
            text = self.min_distance.strip().lower()
            try:
                self.min_distance = None if text == "none" else float(text)
            except ValueError:
                raise SeedSourceError(f"UniMat min_distance must be a distance in Angstrom or none, got "
                                      f"{self.min_distance!r}") from None
        if self.min_distance is not None and not (math.isfinite(self.min_distance) and self.min_distance > 0):
            raise SeedSourceError(f"UniMat min_distance must be a positive distance in Angstrom, got {self.min_distance}")
        if isinstance(self.spacegroup, int) and not 1 <= self.spacegroup <= 230:
            raise SeedSourceError(f"UniMat space group must be 1-230, got {self.spacegroup}")

    @property
    def strengths(self) -> tuple[float, ...]:
        """The strength level of each pass over the template candidates (the last one repeats)."""
        levels = self.strength if isinstance(self.strength, (tuple, list)) else (self.strength,)
        return tuple(float(level) for level in levels)

    def network(self):
        """The loaded model (loaded on first use)."""
        if self._net is None:
            self._net = load_model(self.model, device=self.device)
        return self._net

    def make(self, counts: Mapping[str, int], indices: Sequence[int], *, run_seed: int) -> list[Seed]:
        """One generated structure per index, seeded by ``derive_seed(run_seed, name, k)``."""
        indices = [int(k) for k in indices]
        if not indices:
            return []
        plan = self._plan(counts, indices, run_seed)  # k -> (start atoms or None, strength, origin, cycle)
        structures: dict[int, Any] = {}
        kept = {k for k in indices if self.first_pass == "template" and plan[k][3] == 0}  # first pass: templates
        for k in kept:
            structures[k] = plan[k][0].copy()
            structures[k].info = {"strength": 0.0}
        made_here = [k for k in indices if k not in kept]
        own = {k: self._start_spacegroup(plan[k][0]) for k in made_here}  # a start template's own space group
        for strength, number in sorted({(plan[k][1], own[k] or 0) for k in made_here}):
            group = [k for k in made_here if plan[k][1] == strength and (own[k] or 0) == number]
            starts = [plan[k][0] for k in group]
            made = self._generate(counts, group, run_seed, starts, strength, spacegroup=number or None,
                                  keep_symmetry=self.start == "symmetry" and starts[0] is not None)
            for k, atoms in zip(group, made, strict=True):
                if number:
                    atoms.info["spacegroup_source"] = "start template"
                structures[k] = atoms
        finished = {k: structures[k] if k in kept else self._finished(structures[k], plan[k][0], plan[k][3])
                    for k in indices}  # fmt: skip
        if self.start == "symmetry" and self.min_distance is not None:
            self._free_fallback(counts, finished, [k for k in made_here if self._too_close(finished[k])], run_seed, own)
        seeds = []
        for k in indices:
            atoms = finished[k]
            from_noise = plan[k][0] is None or (self.start == "symmetry" and k not in kept)
            if self.volume == "table" and from_noise:
                atoms = _scaled_to(atoms, estimate_volume(counts))
            if k not in kept:  # the flag says what the finished seed is, after the redraws and this source's last touch
                atoms.info.pop("too_close", None)
                if self._too_close(atoms):
                    atoms.info["too_close"] = True
            if atom_counts(atoms) != dict(counts):
                raise SeedSourceError(f"UniMat sample {k} has composition {atoms.get_chemical_formula()}, not "
                                      f"{formula_label(counts)}")
            info = {key: atoms.info[key] for key in ("model", "sampler", "steps", "guidance", "strength", "symmetrized",
                                                     "symmetry_kept", "spacegroup", "spacegroup_source", "redraws", "too_close", "fallback")
                    if key in atoms.info}  # fmt: skip
            info["start"] = plan[k][2]
            seeds.append(make_seed(atoms, counts, self.name, k, run_seed=run_seed,
                                   **{f"unimat_{key}": v for key, v in info.items()}))
        return seeds

    def _too_close(self, atoms) -> bool:
        """Whether two atoms are closer than ``min_distance`` (never, without one)."""
        return self.min_distance is not None and shortest_distance(atoms, exact_below=self.min_distance) < self.min_distance

    def _free_fallback(self, counts, finished: dict, indices: list[int], run_seed: int, own: dict) -> None:
        """Samples inside a symmetry that stayed too close (an orbit collapsed onto a special position,
        which a redraw with the same operations repeats), drawn again from noise without the
        constraint, still conditioned on the template's space group; ``finished`` is updated."""
        for number in sorted({own[k] or 0 for k in indices}):
            group = [k for k in indices if (own[k] or 0) == number]
            for k, atoms in zip(group, self._generate(counts, group, run_seed, [None] * len(group), 1.0,
                                                      spacegroup=number or None), strict=True):  # fmt: skip
                atoms.info["fallback"] = "sampled without the symmetry: its symmetric sample had atoms too close"
                if number:
                    atoms.info["spacegroup_source"] = "start template"
                finished[k] = atoms

    def _finished(self, atoms, start, cycle: int | None):
        """A model sample after its mode's last touch: the symmetric cell, or the first pass's option."""
        if self.start == "symmetry":
            return _cell_symmetrized(start, atoms) if atoms.info.get("symmetry_kept") else atoms
        if cycle == 0 and self.first_pass == "volume":
            return _rescaled(start, atoms)
        if cycle == 0 and self.first_pass == "symmetrize":
            return _symmetrized(start, atoms)
        return atoms

    def _condition(self) -> tuple[int | str | None, Any]:
        """``(spacegroup, spacegroup_prior)`` arguments of ``generate`` for this source's option."""
        net = self.network()
        if not getattr(net, "spacegroup_conditioned", False):
            return "default", None
        if self.spacegroup != "templates":
            return self.spacegroup, None
        if self._spacegroup_prior is None:
            data = reference_dataset(net)
            reference = self.template_reference or model_reference(net) or data
            if reference is None:  # nothing to draw from: generate() says so for "auto"
                return "auto", None
            fallback = SpacegroupPrior.from_hdf5(data) if data is not None else None
            self._spacegroup_prior = TemplateSpacegroupPrior(self._template_index(reference), fallback=fallback)
        return "auto", self._spacegroup_prior

    def _template_index(self, reference) -> TemplateIndex:
        """The template reference ``reference`` (None: the bundled default) as an index, loaded once.

        The space-group prior of ``spacegroup="templates"`` and the templates of ``start="template"``
        usually read the same file: they share its index.
        """
        if isinstance(reference, TemplateIndex):
            return reference
        path = Path(default_reference() if reference is None else reference).resolve()
        if path not in self._indexes:
            self._indexes[path] = TemplateIndex.load(path)
        return self._indexes[path]

    def _start_spacegroup(self, start) -> int | None:
        """The space group of a start template, the condition of its denoising (``spacegroup="templates"``)."""
        if start is None or self.spacegroup != "templates" or not getattr(self.network(), "spacegroup_conditioned", False):
            return None
        return spacegroup_number(start)

    def _generate(self, counts, indices: list[int], run_seed: int, starts: list, strength: float, *,
                  spacegroup: int | None = None, keep_symmetry: bool = False) -> list:  # fmt: skip
        begin = None if starts[0] is None else starts
        spacegroup, prior = (spacegroup, None) if spacegroup else self._condition()
        try:
            return generate(
                dict(counts), seeds=[derive_seed(run_seed, self.name, k) for k in indices], model=self.network(),
                guidance=self.guidance, steps=self.steps or self.network().config.diffusion.default_steps, sampler=self.sampler, device=self.device,
                batch_size=self.batch_size, start=begin, strength=strength, spacegroup=spacegroup, spacegroup_prior=prior,
                keep_symmetry=keep_symmetry, min_distance=self.min_distance,
            )  # fmt: skip
        except FormulaError as err:
            raise NoSeedsForFormula(f"the UniMat model cannot build {formula_label(counts)}: {err}") from None

    def _plan(self, counts: Mapping[str, int], indices: Sequence[int], run_seed: int) -> dict[int, tuple]:
        """Per index: the starting structure (None: noise), its strength and where it started."""
        if self.start == "noise":
            return {k: (None, 1.0, "noise", None) for k in indices}
        if sum(int(n) for n in counts.values()) < self.template_min_atoms:
            return {k: (None, 1.0, "noise (small cell)", None) for k in indices}

        if self._templates is None:
            options = dict(self.template_options or {})
            if self.start == "symmetry":  # every pass keeps the exact template's operations: no perturbation
                options = {"strain": 0.0, "rattle": 0.0, **options}
            self._templates = TemplateSeedSource(reference=self._template_index(self.template_reference), **options)
        levels = self.strengths
        try:
            templates = self._templates.make(counts, indices, run_seed=run_seed)
        except NoSeedsForFormula:
            return {k: (None, 1.0, "noise (no template)", None) for k in indices}
        plan = {}
        for k, seed in zip(indices, templates, strict=True):
            info = seed.atoms.info
            ordering = f" ({info['template_ordering']})" if "template_ordering" in info else ""
            origin = (f"template {info.get('template_id', '?')}{ordering} rank {info.get('template_rank')} "
                      f"cycle {info.get('template_cycle')}")  # fmt: skip
            cycle = int(info.get("template_cycle", 0))
            level = 1.0 if self.start == "symmetry" else levels[min(cycle, len(levels) - 1)]
            plan[k] = (seed.atoms, level, origin, cycle)
        return plan


def _scaled_to(atoms, volume: float):
    """A copy of ``atoms`` scaled isotropically to ``volume`` (Angstrom^3)."""
    scaled = atoms.copy()
    scaled.set_cell(scaled.cell[:] * (volume / scaled.get_volume()) ** (1.0 / 3.0), scale_atoms=True)
    return scaled


def _rescaled(template, denoised):
    """``template`` scaled isotropically to the volume of ``denoised`` (its UniMat-refined version)."""
    atoms = _scaled_to(template, denoised.get_volume())
    atoms.info = dict(denoised.info)
    return atoms


def _symmetrized(template, denoised):
    """``denoised`` projected onto the space group of the ``template`` it was denoised from.

    The template goes through the codec first, so its atoms come in the sample's slot order and
    fractional frame; a template whose symmetry spglib cannot use leaves the sample as it is.
    """

    reference = decode(*encode(template))
    try:
        atoms = project_onto_symmetry(denoised, reference)
    except SymmetryError:
        return denoised
    atoms.info["symmetrized"] = True
    return atoms


def _cell_symmetrized(template, sample):
    """``sample`` (coordinates already in ``template``'s symmetry) with its cell metric averaged too."""
    try:
        rotations, _, _ = symmetry_operations(decode(*encode(template)))
    except SymmetryError:
        return sample
    atoms = sample.copy()
    atoms.set_cell(symmetrized_cell(sample.cell[:], rotations), scale_atoms=True)
    atoms.info["symmetrized"] = True
    return atoms
