"""The search-efficiency benchmark's seeds: building the seed sources a run compares, and drawing their seeds.

It owns :func:`build_sources` (every requested source that can be built, by benchmark name, with a
note for each one skipped; ``mixed`` always mixes every pure source that can be built), the
template index over the training structures that the template-based sources share, and
:func:`make_seeds` (the ``n`` seeds of one source for one target).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

from ase_unimat.core.messages import one_line
from bench._search_efficiency_config import MODEL_SOURCES, PURE_SOURCES, SOURCE_ORDER, TEMPLATE_SOURCES, BenchConfig
from bench._search_efficiency_targets import Target


def build_sources(
    config: BenchConfig, targets: Sequence[Target], say: Callable[[str], None]
) -> tuple[dict[str, Any], dict[str, str]]:
    """Seed-source objects by benchmark name (in ``SOURCE_ORDER``), and notes for the sources skipped.

    "mixed" always mixes every pure source that can be built, requested or not, so its seeds do not
    depend on which other sources a run selects.
    """
    from ase_unimat.search.seed_registry import make_seed_sources
    from ase_unimat.search.seeds import NoSeedsForFormula

    wanted = set(config.sources) | (set(PURE_SOURCES) if "mixed" in config.sources else set())
    built: dict[str, Any] = {}
    notes: dict[str, str] = {}
    probe = targets[0].counts
    template_reference = None
    for name in SOURCE_ORDER:
        if name == "mixed" or name not in wanted:
            continue
        try:
            if name in TEMPLATE_SOURCES and template_reference is None:
                template_reference = _template_reference(config, targets)
            source = make_seed_sources(name, model=config.model, template_reference=template_reference,
                                       unimat_options=dict(config.unimat_options),
                                       template_options=config.template_kwargs())  # fmt: skip
            if name in MODEL_SOURCES:
                try:
                    source.make(probe, [0], run_seed=config.run_seed)  # loads the model now: fail early
                except NoSeedsForFormula:
                    pass  # no template for this one target; others may have one
            built[name] = source
        except Exception as err:  # noqa: BLE001 - any reason a source cannot run becomes a note
            notes[name] = f"skipped: {type(err).__name__}: {one_line(err, limit=300, empty='')}"
            say(f"source {name} {notes[name]}")
    sources = {name: source for name, source in built.items() if name in config.sources}
    if "mixed" in config.sources:
        available = [name for name in PURE_SOURCES if name in built]
        if len(available) >= 2:
            spec = ",".join(f"{name}:1" for name in available)
            sources["mixed"] = make_seed_sources(spec, model=config.model, template_reference=template_reference,
                                                 unimat_options=dict(config.unimat_options),
                                                 template_options=config.template_kwargs())  # fmt: skip
            notes["mixed"] = f"equal mix of {', '.join(available)} (run seed + 1)"
        else:
            notes["mixed"] = "skipped: needs at least two available pure sources (unimat, random, template)"
    return sources, notes


def _template_reference(config: BenchConfig, targets: Sequence[Target]) -> Any:
    """The templates: ``config.template_reference``'s file, else an index over the training structures.

    With ``template_reference="model"``, the ``reference.h5`` shipped beside ``config.model``
    (an error if it has none); another string is a file or folder. The default index over the
    training structures that could serve any of the targets:

    It holds the structures of each target's stoichiometry and, for ordered substitution, of each of
    its merged compositions (one element fewer); the second kind never matches a target's own
    stoichiometry unless it is one, so plain prototype substitution sees the same candidates.
    """
    from ase_unimat.core.formula import anonymized_formula
    from ase_unimat.evaluation.reference import TRAINING_SOURCES, load_reference_records
    from ase_unimat.search.ordered_templates import merged_compositions
    from ase_unimat.search.templates import TemplateIndex

    if config.template_reference == "model":
        from ase_unimat.model.bundled import model_reference

        path = model_reference(config.model)
        if path is None:
            raise RuntimeError(f"--template-reference model: model {config.model!r} ships no reference.h5")
        return TemplateIndex.load(path)
    if config.template_reference is not None:
        return TemplateIndex.load(config.template_reference)
    wanted = {(anonymized_formula(c), t.natoms) for t in targets for c in [t.counts, *merged_compositions(t.counts)]}
    records = [
        r
        for r in load_reference_records(config.data_dir, sources=TRAINING_SOURCES, max_atoms=20)
        if any(anonymized_formula(r.counts) == pattern and natoms % r.natoms == 0 for pattern, natoms in wanted)
    ]
    return TemplateIndex.from_atoms([r.atoms() for r in records], [r.material_id for r in records])


def make_seeds(source: Any, target: Target, n: int, run_seed: int) -> list[Any]:
    """``n`` seeds of ``source`` for ``target`` (raises ``NoSeedsForFormula`` when there are none)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return source.make(target.counts, list(range(n)), run_seed=run_seed)
