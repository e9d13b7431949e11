"""The S.U.N. report of generated structures: relaxed, energy above a hull of our data, unique, novel.

The hull is built from *competing phases taken from our own data* (``mp_20`` train and the extra
Materials Project structures, at most 20 atoms, in the chemical system) relaxed with the same
calculator and settings as the generated structures, so the energies are comparable. Relaxed
phase energies are cached in a JSON file keyed by ``material_id | calculator | settings hash``, so
each phase is computed once per calculator and settings.

Rules (documented choices):
- Per reduced formula only the ``per_formula`` polymorphs of lowest DFT energy above hull (as the
  data records it) enter the hull (default 1); ``None`` takes all.
- Elemental references (:func:`elemental_fallbacks`), one rule for every element 1-94: an element's
  reference is its elemental polymorph of lowest recorded DFT ``e_above_hull`` (unknown counts as
  highest; ties: fewer atoms, then id), first among the hull records, else among *all* elemental
  structures of :data:`HULL_SOURCES` whatever their size (:func:`elemental_records`; alpha-B,
  mp-22046, has 50 atoms). A polymorph is *trusted* when its ``e_above_hull`` is at most
  :data:`ELEMENTAL_TRUST` (0.1 eV/atom); when an element has no trusted polymorph (none, a high one,
  or an unknown one as in the lemat sample, which records no energies), :func:`elemental_fallback`
  is added beside it and the hull keeps whichever relaxes lower. The fallback, tagged by its id:
  ``ase-molecule-X2`` (H, N, O, F, Cl, Br, I: the diatomic molecule, g2 / NIST bond length, alone in
  a cubic box of :data:`BOX_EDGE` Å, relaxed at fixed cell; CHGNet puts it 0.02-0.09 eV/atom above
  the molecular crystals of the data, which therefore win where the data have one);
  ``ase-crystal-X`` (the measured ground-state structure from :data:`ELEMENT_CRYSTALS`, for the
  elements whose ASE reference state is missing or broken: B, P, Ga, Se, Te, Mn, U, Np, Pa, Pm, Ra);
  ``ase-crystal-X-approx`` (a simple stand-in, not the ground state: S as helical chains, fcc Pu,
  He, Rn, At, bcc Fr; a noble-gas atom alone in a box has no neighbours within CHGNet's cutoff);
  else ``ase-bulk-X``, ASE's reference state (``ase.build.bulk``). A stand-in lies above the true
  ground state, which lowers the E_hull of that element's compounds (optimistic).
- ``e_hull`` may be negative (a structure below our hull), from
  ``PhaseDiagram.get_decomp_and_e_above_hull(..., allow_negative=True)``.
- Uniqueness: pymatgen ``StructureMatcher()`` (default tolerances) within the generated set; the
  first of each group of matching structures is unique. Novelty: no match among training
  structures of the same reduced formula. S.U.N.: stable (``e_hull <= threshold``), unique and
  novel, as a share of all generated structures (MatterGen, Zeni et al. 2025, uses 0.1 eV/atom).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from ase_unimat.core.geometry import atom_counts
from ase_unimat.core.representation import to_structure
from ase_unimat.evaluation.elements import elemental_fallbacks
from ase_unimat.evaluation.hull import EnergyCache, PhaseEnergy, energy_above_hull, phase_energies, relax_many
from ase_unimat.evaluation.reference import HULL_SOURCES, ReferenceRecord, competing_phases
from ase_unimat.search.relax import RelaxSettings

# ------------------------------------------------------------------------------ uniqueness, novelty


def unique_mask(structures: Sequence[Any]) -> np.ndarray:
    """(N,) bool: True for the first structure of each group of matching structures."""
    from pymatgen.analysis.structure_matcher import StructureMatcher  # pymatgen is slow to import

    matcher = StructureMatcher()
    items = [to_structure(s) for s in structures]
    kept: list[int] = []
    mask = np.zeros(len(items), dtype=bool)
    for i, s in enumerate(items):
        if not any(items[j].composition.reduced_formula == s.composition.reduced_formula and matcher.fit(s, items[j])
                   for j in kept):  # fmt: skip
            kept.append(i)
            mask[i] = True
    return mask


def novel_mask(structures: Sequence[Any], training: Sequence[ReferenceRecord]) -> np.ndarray:
    """(N,) bool: True where no training structure of the same reduced formula matches."""
    from pymatgen.analysis.structure_matcher import StructureMatcher  # pymatgen is slow to import

    matcher = StructureMatcher()
    by_formula: dict[str, list[ReferenceRecord]] = {}
    for record in training:
        by_formula.setdefault(record.reduced_formula, []).append(record)
    parsed: dict[str, Any] = {}
    mask = np.ones(len(structures), dtype=bool)
    for i, obj in enumerate(structures):
        s = to_structure(obj)
        for record in by_formula.get(s.composition.reduced_formula, []):
            if record.material_id not in parsed:
                parsed[record.material_id] = to_structure(record.atoms())
            if matcher.fit(s, parsed[record.material_id]):
                mask[i] = False
                break
    return mask


# -------------------------------------------------------------------------------------------- report


def stability_report(
    generated: Sequence[Atoms],
    *,
    calculator: Any,
    cache: EnergyCache,
    hull_records: Sequence[ReferenceRecord],
    training_records: Sequence[ReferenceRecord],
    settings: RelaxSettings | None = None,
    calculator_name: str | None = None,
    calculator_options: Mapping[str, Any] | None = None,
    per_formula: int | None = 1,
    stable_threshold: float = 0.1,
    workers: int = 1,
    relax_generated: bool = True,
    data_dir: Path | str | None = None,
    elemental_sources: Sequence[str] = HULL_SOURCES,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Relax generated structures, place them on the hull, and count stable/unique/novel ones.

    Parameters
    ----------
    generated
        Structures to judge (relaxed first unless ``relax_generated=False``, when each needs an
        energy from its calculator or ``info["energy"]``).
    calculator, calculator_options, calculator_name
        The ASE calculator spec (``"chgnet"``) used for everything; its name keys the cache.
    cache
        Where relaxed competing-phase energies live.
    hull_records, training_records
        Competing phases (:data:`HULL_SOURCES`) and the training set for novelty (:data:`TRAINING_SOURCES`).
    per_formula
        Polymorphs per reduced formula entering the hull (see the module docstring).
    stable_threshold
        eV/atom above hull still counted as stable in the S.U.N. rate.
    data_dir, elemental_sources
        Where elements without a trusted elemental phase in ``hull_records`` find one (any size;
        ``elemental_sources=()``: none) before the fallback (:func:`elemental_fallbacks`).

    Returns
    -------
    dict
        ``e_hull`` (per structure, NaN where the relaxation failed or no hull could be built, with the
        reason in ``e_hull_missing``), ``elemental_references`` (element: id of the elemental phase
        the hulls used, the lowest per atom), ``frac_e_hull_le_0``,
        ``frac_e_hull_le_0.1``, ``uniqueness``, ``novelty``, ``sun_rate``, quantiles, counts.
    """
    settings = settings or RelaxSettings()
    say = progress or (lambda message: None)
    if not generated:
        raise ValueError("no generated structures")
    if relax_generated:
        say(f"relaxing {len(generated)} generated structures")
        results = relax_many([(f"gen-{i:05d}", a) for i, a in enumerate(generated)], calculator, settings,
                             calculator_options=calculator_options, workers=workers, source="generated")  # fmt: skip
        relaxed = [r.atoms for r in results]
        energies = [r.energy if r.ok else math.nan for r in results]
    else:
        relaxed = list(generated)
        energies = [_given_energy(a) for a in generated]
    elements = sorted({s for a in relaxed for s in a.get_chemical_symbols()})
    chemsys_phases: dict[frozenset[str], list[PhaseEnergy] | str] = {}  # phases, or why there is no hull
    e_hull = np.full(len(relaxed), np.nan)
    reasons = ["" for _ in relaxed]
    for i, (atoms, energy) in enumerate(zip(relaxed, energies, strict=True)):
        if not math.isfinite(energy):
            reasons[i] = "relaxation failed"
            continue
        counts = atom_counts(atoms)
        chemsys = frozenset(counts)
        if chemsys not in chemsys_phases:
            try:
                phases = competing_phases(hull_records, chemsys, per_formula=per_formula)
                fallbacks = elemental_fallbacks(phases, chemsys, data_dir=data_dir, sources=elemental_sources)
                added = f" + {', '.join(name for name, _ in fallbacks)}" if fallbacks else ""
                say(f"{'-'.join(sorted(chemsys))}: {len(phases)} competing phases{added}")
                chemsys_phases[chemsys] = phase_energies([*phases, *fallbacks], calculator, settings, cache=cache,
                                                         calculator_name=calculator_name,
                                                         calculator_options=calculator_options, workers=workers)  # fmt: skip
            except ValueError as err:  # an element with no reference phase: no hull for this system
                chemsys_phases[chemsys] = f"no hull for {'-'.join(sorted(chemsys))}: {err}"
                say(chemsys_phases[chemsys])
        phases_or_reason = chemsys_phases[chemsys]
        if isinstance(phases_or_reason, str):
            reasons[i] = phases_or_reason
            continue
        try:
            e_hull[i] = energy_above_hull(counts, energy, phases_or_reason)
        except ValueError as err:  # e.g. an elemental phase whose relaxation failed
            reasons[i] = f"no hull: {err}"
    ok = np.isfinite(e_hull)
    unique = unique_mask(relaxed)
    novel = novel_mask(relaxed, training_records)
    stable = ok & (e_hull <= stable_threshold)
    finite = e_hull[ok]
    return {
        "n": len(relaxed),
        "n_relaxed": int(ok.sum()),
        "elements": elements,
        "e_hull": e_hull.tolist(),
        "e_hull_missing": {i: reason for i, reason in enumerate(reasons) if reason},
        "elemental_references": _elemental_choices(chemsys_phases.values()),
        "e_hull_quantiles": {q: float(np.quantile(finite, float(q))) for q in ("0.1", "0.25", "0.5", "0.75", "0.9")}
        if finite.size
        else {},
        "frac_e_hull_le_0": float(np.mean(ok & (e_hull <= 1e-8))),
        "frac_e_hull_le_0.1": float(np.mean(ok & (e_hull <= 0.1))),
        "uniqueness": float(unique.mean()),
        "novelty": float(novel.mean()),
        "sun_rate": float(np.mean(stable & unique & novel)),
        "stable_threshold": float(stable_threshold),
        "hull_phases_cached": len(cache),
    }


def _elemental_choices(systems: Iterable[list[PhaseEnergy] | str]) -> dict[str, str]:
    """Element -> id of its lowest-energy-per-atom relaxed elemental phase over the systems' phases."""
    best: dict[str, tuple[float, str]] = {}
    for phase in (p for phases in systems if not isinstance(phases, str) for p in phases):
        if len(phase.counts) != 1 or not math.isfinite(phase.energy):
            continue
        symbol = next(iter(phase.counts))
        per_atom = phase.energy / sum(phase.counts.values())
        if symbol not in best or per_atom < best[symbol][0]:
            best[symbol] = (per_atom, phase.key.split("|")[0])
    return {symbol: best[symbol][1] for symbol in sorted(best)}


def _given_energy(atoms: Atoms) -> float:
    if "energy" in atoms.info:
        return float(atoms.info["energy"])
    if atoms.calc is not None:
        return float(atoms.get_potential_energy())
    raise ValueError("relax_generated=False needs an energy in atoms.info['energy'] or a calculator")
