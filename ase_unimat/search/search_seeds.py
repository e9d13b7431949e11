"""The seeds of a search: which source each index gets, its formula units, and the order they are made in.

Seed ``k`` of a run is fully determined by ``(run_seed, k)``: its number of formula units
(:func:`formula_units_of`), its source (the mixing allocation of :func:`seed_source`, from the spec
of :class:`~ase_unimat.search.search.Search`) and its structure. :func:`iter_seeds` makes them a
chunk at a time, one ``make`` call per formula-unit group; :func:`check_file_seeds` holds seeds
read from files to their composition and their number.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ase_unimat.search.buildcell import read_cell
from ase_unimat.search.search_options import SearchError
from ase_unimat.search.seed_registry import make_seed_sources
from ase_unimat.search.seeds import seed_rng


def formula_units_of(index: int, bounds: tuple[int, int], *, run_seed: int) -> int:
    """Formula units of seed ``index``: uniform in ``bounds``, a function of ``(run_seed, index)`` only."""

    low, high = bounds
    if low == high:
        return low
    return int(seed_rng(run_seed, "formula-units", index).integers(low, high + 1))


def seed_source(
    spec: Any,
    *,
    model: Any,
    template_reference: Any,
    cell_file: Path | None,
    unimat_strength: tuple[float, ...] | None,
    ordered_templates: bool,
) -> Any:
    """The ``SeedSource`` of a search's ``seeds`` option: a spec string built here, or a source object as it is."""
    if not isinstance(spec, str):
        if not hasattr(spec, "make"):
            raise SearchError(f"seeds must be a spec string or a SeedSource, got {spec!r}")
        return spec

    options = None if unimat_strength is None else {"strength": unimat_strength}
    cell_spec = None if cell_file is None else read_cell(cell_file, nform=1)  # formula units are drawn per seed
    return make_seed_sources(
        spec, model=model, template_reference=template_reference, cell_spec=cell_spec,
        unimat_options=options, template_options={"ordered": ordered_templates},
    )  # fmt: skip


def check_file_seeds(source: Any, counts: Mapping[str, int], n: int) -> int:
    """Seeds read from files: refuse other compositions now; return ``n`` lowered to the structures there are.

    Call it from ``Search.__init__``: the warning names the line that made the search.
    """
    for part in getattr(source, "sources", {}).values():
        if hasattr(part, "check_counts"):
            part.check_counts(counts)
            if n > len(part):
                warnings.warn(f"{part.path} holds {len(part)} structures; n={n} lowered to it", stacklevel=3)
                n = len(part)
    return n


def iter_seeds(
    source: Any,
    counts: Mapping[str, int],
    indices: Sequence[int],
    *,
    formula_units: tuple[int, int],
    run_seed: int,
    chunk: int,
) -> Iterator[tuple[Any, int]]:
    """Seeds for ``indices`` in order, made ``chunk`` at a time (one ``make`` call per formula-unit group)."""
    for start in range(0, len(indices), max(1, chunk)):
        block = indices[start : start + chunk]
        groups: dict[int, list[int]] = {}
        for k in block:
            groups.setdefault(formula_units_of(k, formula_units, run_seed=run_seed), []).append(k)
        made: dict[int, Any] = {}
        for units, group in groups.items():
            unit_counts = {symbol: c * units for symbol, c in counts.items()}
            made.update(zip(group, source.make(unit_counts, group, run_seed=run_seed), strict=True))
        for k in block:
            yield made[k], k
