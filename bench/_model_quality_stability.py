"""The model-quality benchmark's stability part: samples relaxed and placed on hulls of competing phases.

It owns :func:`stability_scores` (a seeded subset of the samples whose hull is defined, relaxed
with the competing phases of their chemical systems; E_hull, uniqueness, novelty and S.U.N., a
sample whose elemental phase fails to relax replaced by the next one), :func:`unreferenced_elements`
(elements no hull can be built for) and :func:`training_records` (the training structures novelty
compares against).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ase_unimat.core.geometry import atom_counts
from bench._model_quality_settings import QualitySettings


def unreferenced_elements(elements: Iterable[str], hull_records: Sequence[Any]) -> list[str]:
    """Elements with neither an elemental phase in ``hull_records`` nor an ASE reference state: no hull
    containing them can be built by ``stability`` (it raises)."""
    from ase_unimat.evaluation.elements import elemental_fallbacks

    have = {next(iter(r.elements)) for r in hull_records if len(r.elements) == 1}
    missing = []
    for element in sorted(set(elements) - have):
        try:
            elemental_fallbacks([], [element])
        except ValueError:
            missing.append(element)
    return missing


def training_records(training: Sequence[Any], formulas: set[str]) -> list[Any]:
    """``reference_data.ReferenceRecord`` s of the training structures whose reduced formula is in ``formulas``
    (novelty compares only structures of the same reduced formula)."""
    import warnings

    from pymatgen.core import Composition
    from pymatgen.io.ase import AseAtomsAdaptor

    from ase_unimat.evaluation.reference import ReferenceRecord

    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, atoms in enumerate(training):
            counts = atom_counts(atoms)
            if Composition(counts).reduced_formula not in formulas:
                continue
            cif = AseAtomsAdaptor.get_structure(atoms).to(fmt="cif")
            material_id = str(atoms.info.get("material_id", f"train-{i}"))
            out.append(ReferenceRecord(material_id, "training", counts, math.nan, cif))
    return out


def stability_scores(
    samples: Sequence[tuple[int, Any]], *, settings: QualitySettings, hull_records: Sequence[Any],
    training: Sequence[Any], cache_dir: Path, say: Callable[[str], None], training_label: str = "the given training set",
) -> dict[str, Any]:  # fmt: skip
    """Relax a seeded subset of ``(test index, sample)`` pairs and report E_hull, uniqueness, novelty, S.U.N.

    The subset is drawn from the samples whose hull is defined; a sample whose chemical system has
    an elemental phase that fails to relax is replaced by the next candidate.
    """
    import numpy as np
    from pymatgen.core import Composition

    from ase_unimat.evaluation.elements import elemental_fallbacks
    from ase_unimat.evaluation.hull import EnergyCache, phase_energies
    from ase_unimat.evaluation.reference import competing_phases
    from ase_unimat.evaluation.sun import stability_report
    from ase_unimat.search.relax import RelaxSettings

    limit = settings.hull_max_dft_e_above_hull
    hull = [r for r in hull_records  # elements always kept; NaN (unknown) kept
            if limit is None or len(r.elements) == 1 or not r.e_above_hull > limit]  # fmt: skip
    unreferenced = set(unreferenced_elements({e for _, a in samples for e in a.get_chemical_symbols()}, hull))
    undefined = [i for i, a in samples if unreferenced & set(a.get_chemical_symbols())]
    relax_settings = RelaxSettings(fmax=settings.fmax, max_steps=settings.max_steps)
    options = {"threads": 1} if settings.calculator == "chgnet" else None
    cache = EnergyCache(Path(cache_dir) / "hull_energies.json")
    order = [samples[i] for i in np.random.default_rng([settings.seed, 3]).permutation(len(samples))]
    phases_start = time.perf_counter()
    passed_over: dict[str, int] = {}  # element -> candidates passed over for it
    failed_elements: dict[str, int] = {}  # element -> candidates dropped because its phase failed to relax
    members: dict[frozenset[str], list[str]] = {}  # chemical system -> its phase ids
    phases: dict[str, Any] = {}  # phase id -> ReferenceRecord or (id, Atoms)
    energies: dict[str, Any] = {}  # phase id -> PhaseEnergy
    kept: list[tuple[int, Any]] = []
    position, n_passed = 0, 0
    while len(kept) < settings.n_stability and position < len(order):
        batch = []  # candidates with a defined hull, as many as still needed
        while len(kept) + len(batch) < settings.n_stability and position < len(order):
            index, atoms = order[position]
            position += 1
            missing = unreferenced & set(atoms.get_chemical_symbols())
            for element in missing:
                passed_over[element] = passed_over.get(element, 0) + 1
            n_passed += bool(missing)
            if not missing:
                batch.append((index, atoms))
        new = {}
        for chemsys in sorted({frozenset(a.get_chemical_symbols()) for _, a in batch} - set(members), key=sorted):
            inside = competing_phases(hull, chemsys)
            members[chemsys] = []
            for phase in [*inside, *elemental_fallbacks(inside, chemsys)]:
                key = phase.material_id if hasattr(phase, "material_id") else phase[0]
                members[chemsys].append(key)
                if key not in phases:
                    new[key] = phases[key] = phase
        say(f"stability: {len(batch)} samples, {len(new)} new competing phases ({len(cache)} energies cached)")
        got = phase_energies(list(new.values()), settings.calculator, relax_settings, cache=cache,
                             calculator_options=options, workers=settings.workers)  # fmt: skip
        energies.update(zip(new, got, strict=True))
        for index, atoms in batch:  # every element needs a relaxed elemental phase
            chemsys = frozenset(atoms.get_chemical_symbols())
            have = {next(iter(energies[k].counts)) for k in members[chemsys]
                    if len(energies[k].counts) == 1 and math.isfinite(energies[k].energy)}  # fmt: skip
            for element in sorted(chemsys - have):
                failed_elements[element] = failed_elements.get(element, 0) + 1
            if chemsys <= have:
                kept.append((index, atoms))
    systems = {frozenset(a.get_chemical_symbols()) for _, a in kept}
    phases_s = time.perf_counter() - phases_start
    if not kept:
        return {"skipped": "no sample has a defined hull", "unreferenced_elements": sorted(unreferenced)}
    formulas = {Composition(atom_counts(a)).reduced_formula for _, a in kept}
    start = time.perf_counter()
    report = stability_report([a for _, a in kept], calculator=settings.calculator, cache=cache, hull_records=hull,
                              training_records=training_records(training, formulas), settings=relax_settings,
                              calculator_options=options, per_formula=1, stable_threshold=settings.stable_threshold,
                              workers=settings.workers, progress=say)  # fmt: skip
    report_s = time.perf_counter() - start
    e_hull = np.asarray(report["e_hull"], dtype=float)
    finite = e_hull[np.isfinite(e_hull)]
    report.update({
        "test_indices": [i for i, _ in kept],
        "material_ids": [a.info.get("material_id") for _, a in kept],
        "e_hull_median": float(np.median(finite)) if finite.size else math.nan,
        "e_hull_quartiles": [float(np.quantile(finite, q)) for q in (0.25, 0.75)] if finite.size else [],
        "hull_undefined": {
            "unreferenced_elements": sorted(unreferenced),
            "share_of_all_samples": len(undefined) / len(samples),
            "samples_passed_over": n_passed,
            "passed_over_by_element": dict(sorted(passed_over.items())),
            "elemental_phase_failed_to_relax": failed_elements,
        },
        "candidates": len(samples),
        "hull": {"sources": "mp_20/train + extra_mp (reference_data.HULL_SOURCES), <= 20 atoms; elements at any size or fallbacks",
                 "per_formula": 1, "max_dft_e_above_hull": limit, "chemical_systems": len(systems),
                 "phases_relaxed": len(phases), "restricted_to": "the chemical systems of the relaxed samples"},
        "relax": {"calculator": settings.calculator, "calculator_options": options, "workers": settings.workers,
                  **asdict(relax_settings)},
        "novelty_reference": training_label,
        "wall_s": {"competing_phases": round(phases_s, 1), "samples_and_hull": round(report_s, 1)},
    })  # fmt: skip
    return report
