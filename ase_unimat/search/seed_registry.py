"""The seed-source registry: a spec string (``"unimat:0.5,template:0.3,random:0.2"``) to one mixed source.

Apart from :mod:`ase_unimat.search.seeds` (the contract every source implements) so that the
contract imports no source and every source imports the contract: no cycle.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from ase_unimat.model.bundled import model_reference
from ase_unimat.search.buildcell import read_cell
from ase_unimat.search.file_seeds import FileSeedSource
from ase_unimat.search.random_seed_options import RandomSeedOptions
from ase_unimat.search.random_seeds import RANDOM_SYM_SYMMOPS, RandomSeedSource
from ase_unimat.search.seeds import MixedSeedSource, SeedSource, SeedSourceError, parse_seed_spec
from ase_unimat.search.template_seeds import TemplateSeedSource
from ase_unimat.search.unimat_seeds import UniMatSeedSource


def make_seed_sources(
    spec: str,
    *,
    model: Any = None,
    template_reference: Any = None,
    cell_spec: Any = None,
    unimat_options: Mapping[str, Any] | None = None,
    template_options: Mapping[str, Any] | None = None,
) -> MixedSeedSource:
    """Build the seed source of a spec string.

    Parameters
    ----------
    spec
        ``"unimat"``, ``"unimat-template"``, ``"unimat-sym"`` (UniMat from noise inside each template's
        symmetry), ``"random"``, ``"random-sym"`` (random with AIRSS ``#SYMMOPS=2-4``), ``"template"``,
        ``"mixed:0.7"``, ``"unimat:0.5,template:0.3,random:0.2"`` or ``"file:PATH"`` (structures read
        from files, :mod:`ase_unimat.search.file_seeds`).
    model
        UniMat model object or path for the ``unimat`` source (``None``: the bundled default).
    template_reference
        HDF5 file or CIF folder (or a built ``TemplateIndex``) for the ``template``,
        ``unimat-template`` and ``unimat-sym`` sources (``None``: the ``reference.h5`` shipped beside ``model``, else the
        bundled default model's training set).
    cell_spec
        A parsed AIRSS seed file (:class:`ase_unimat.search.buildcell.CellSpec`) or its path. Given a
        cell spec, ``random`` seeds are built under its directives and are named ``cell``.
    unimat_options, template_options
        Extra keyword options of :class:`UniMatSeedSource` / :class:`TemplateSeedSource`.

    Returns
    -------
    MixedSeedSource
        One :class:`SeedSource` dispatching every index to its allocated source (a pure spec gives
        a mix of one, which raises the source's own error instead of falling back).
    """
    if isinstance(spec, str) and spec.strip().lower().startswith("file:"):  # structures from files
        path = spec.strip()[len("file:") :]
        if not path:
            raise SeedSourceError("seed spec 'file:' needs a path, e.g. file:old_run or 'file:cifs/*.cif'")
        return MixedSeedSource(sources={"file": FileSeedSource(path)}, weights={"file": 1.0})
    weights = parse_seed_spec(spec)
    if template_reference is None and any(name in ("template", "unimat-template", "unimat-sym") for name in weights):
        template_reference = model_reference(model)  # the model's own training set, else the bundled one
    if cell_spec is not None and not hasattr(cell_spec, "options"):
        cell_spec = read_cell(cell_spec)
    sources: dict[str, SeedSource] = {}
    for name in weights:
        if name in ("unimat", "unimat-template", "unimat-sym"):
            options = dict(unimat_options or {})
            if name != "unimat":
                options.update(start="template" if name == "unimat-template" else "symmetry",
                               template_reference=template_reference, template_options=template_options)  # fmt: skip
            sources[name] = UniMatSeedSource(model=model, name=name, **options)
        elif name == "template":
            sources[name] = TemplateSeedSource(reference=template_reference, **dict(template_options or {}))
        elif name == "random-sym":  # AIRSS random search with symmetry: SYMMOPS 2-4 unless the cell file says
            options = cell_spec.options if cell_spec is not None else RandomSeedOptions()
            if options.symmops in (None, (1, 1)):
                options = dataclasses.replace(options, symmops=RANDOM_SYM_SYMMOPS)
            sources[name] = RandomSeedSource(options=options, name=name, p1_fallback=True)
        else:  # random / cell
            if name == "cell" and cell_spec is None:
                raise SeedSourceError("seed source 'cell' needs an AIRSS seed file (--cell)")
            if cell_spec is None:
                sources[name] = RandomSeedSource()
            else:
                sources[name] = RandomSeedSource(options=cell_spec.options, name="cell")
    return MixedSeedSource(sources=sources, weights=weights)
