"""What each generated sample is conditioned on: its composition and space group, from its seed.

:func:`plan_samples` is the step of :func:`ase_unimat.generation.generate` before any network call.
A sample's composition is the given formula, or drawn (:mod:`ase_unimat.generation.compositions`); its
space group (space-group models only) is none, a given number, or drawn per seed from the
training data of the same stoichiometry (:mod:`ase_unimat.generation.spacegroups`, ``"auto"``).

``spacegroup="default"`` is what ``generate`` uses when none is asked for: :data:`DEFAULT_SPACEGROUP`
for a space-group model, no condition otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ase_unimat.core.formula import FormulaError
from ase_unimat.generation.compositions import CompositionPrior
from ase_unimat.generation.spacegroups import SpacegroupPrior
from ase_unimat.model.bundled import model_reference

#: What ``spacegroup="default"`` means for a space-group model (chosen by CSP match on mp_20/val,
#: see the model card of unimat-mp-wide and ``bench/results/spacegroup_default.json``).
DEFAULT_SPACEGROUP = "auto"


@dataclass(frozen=True)
class SamplePlan:
    """One sample's composition ``{symbol: count}``, space group (0 = none) and the ``info`` to record."""

    counts: dict[str, int]
    spacegroup: int = 0
    info: dict[str, Any] = field(default_factory=dict)


def reference_dataset(model) -> Path | None:
    """The model's training data on this machine: ``reference.h5`` beside its file, else its train_data."""
    shipped = model_reference(model) if getattr(model, "model_path", None) is not None else None
    if shipped is not None:
        return shipped
    files = model.config.train.train_files if hasattr(model.config.train, "train_files") else ()
    return next((Path(p) for p in files if Path(p).is_file()), None)


def resolve_spacegroup(model, spacegroup: int | str | None) -> int | str | None:
    """``spacegroup`` checked against the model: an int 1-230, ``"auto"`` or None (no condition)."""
    if spacegroup == "default":
        return DEFAULT_SPACEGROUP if model.spacegroup_conditioned else None
    if isinstance(spacegroup, str) and spacegroup.lower() == "none":
        return None
    if spacegroup is None:
        return None
    if not model.spacegroup_conditioned:
        raise ValueError("this model takes no space-group condition (it was trained without one)")
    if spacegroup == "auto":
        return "auto"
    if isinstance(spacegroup, bool) or not isinstance(spacegroup, int) or not 1 <= spacegroup <= 230:
        raise ValueError(f"space group must be a number 1-230, 'auto' or None, got {spacegroup!r}")
    return int(spacegroup)


def plan_samples(
    model,
    seeds: Sequence[int],
    *,
    counts: Mapping[str, int] | None = None,
    elements: Sequence[str] | None = None,
    charge_balanced: bool = False,
    spacegroup: int | str | None = "default",
    composition_prior: CompositionPrior | None = None,
    spacegroup_prior: SpacegroupPrior | None = None,
) -> list[SamplePlan]:
    """Composition and space group of each sample (see the module docstring).

    Parameters
    ----------
    model
        The loaded model (its priors and reference data are used).
    seeds
        One per sample; every draw comes from the sample's own seed.
    counts
        The formula's cell counts; None draws a composition per sample.
    elements, charge_balanced
        Restrict drawn compositions to exactly these elements; keep only SMACT-valid ones.
    spacegroup
        ``"default"``, None (no condition), a number 1-230, or ``"auto"``.
    composition_prior, spacegroup_prior
        Prebuilt priors (else built from the model and its reference data).
    """
    if counts is not None and elements is not None:
        raise FormulaError("give a formula or elements, not both")
    mode = resolve_spacegroup(model, spacegroup)
    if counts is None:
        composition_prior = composition_prior or CompositionPrior.from_model(model, reference=reference_dataset(model))
        if elements is not None:
            composition_prior.check_elements(elements)
    if mode == "auto" and spacegroup_prior is None:
        reference = reference_dataset(model)
        if reference is None:
            raise ValueError("spacegroup='auto' needs the model's training data (reference.h5 beside it, or its "
                             "train_data file) with properties/spacegroup; give a number instead")
        spacegroup_prior = SpacegroupPrior.from_hdf5(reference)
    plans = []
    for seed in seeds:
        if counts is None:
            drawn = composition_prior.draw(seed, elements=elements, charge_balanced=charge_balanced)
            sample_counts, info = drawn.counts, dict(drawn.info)
        else:
            sample_counts, info = dict(counts), {"composition_source": "formula"}
        number = 0
        if mode == "auto":
            number, level = spacegroup_prior.draw(sample_counts, seed)
            info.update(spacegroup=number, spacegroup_source=f"auto:{level}")
        elif mode is not None:
            number = int(mode)
            info.update(spacegroup=number, spacegroup_source="given")
        plans.append(SamplePlan(sample_counts, number, info))
    return plans
