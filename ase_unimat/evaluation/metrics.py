"""Generative metrics of the CDVAE / DiffCSP protocol: validity, coverage, distribution distances, CSP match.

Definitions follow CDVAE (Xie et al., ICLR 2022, ``scripts/compute_metrics.py`` and ``eval_utils.py``
of github.com/txie-93/cdvae) as reused by DiffCSP (Jiao et al., NeurIPS 2023, github.com/jiaor17/DiffCSP):

- **Structure validity**: every interatomic distance >= 0.5 A (periodic images included, also an
  atom's own images, which CDVAE's distance matrix leaves out) and cell volume >= 0.1 A^3.
- **Composition validity**: SMACT charge neutrality plus the Pauling electronegativity test over all
  combinations of the elements' oxidation states (the SMACT 2014 list, ``oxidation_states_smact14``,
  which was SMACT's default when CDVAE was published; SMACT >= 3 defaults to ICSD-24 states); a
  single element, or only metals ("alloys"), is valid.
- **Coverage** COV-R / COV-P: per structure the CrystalNN "ops" site fingerprint averaged over sites
  (61 numbers) and the Magpie composition fingerprint (132 numbers, standardised); a generated and a
  reference structure are close when both Euclidean distances are within the cutoffs. COV-R: share of
  reference structures with a close generated one; COV-P: share of generated structures with a close
  reference one (denominator: all generated structures, as CDVAE). Published cutoffs (``COV_Cutoffs``
  in both repositories): mp_20 struct 0.4 / comp 10; carbon_24 0.2 / 4; perov_5 0.2 / 4.
- **Wasserstein distances** (``scipy.stats.wasserstein_distance``) of density (g/cm^3) and of the
  number of distinct elements, valid generated structures against all reference structures.
- **CSP match rate and RMSE** at 1 and at k samples: pymatgen ``StructureMatcher(stol=0.5,
  angle_tol=10, ltol=0.3).get_rms_dist``, whose RMS displacement is normalised by ``(V / n) ** (1/3)``;
  at k the best (lowest RMS) match among the first k predictions counts; RMSE is the mean over
  matched references.

Deviations from the published scripts, on purpose:
- The Magpie scaler is fitted on the reference set (:class:`CompositionScaler`); CDVAE ships fixed
  means/stds from its own training data. Pass ``comp_scaler=`` to use other statistics.
- CSP match requires only the *prediction* to be structurally valid; DiffCSP also requires both to be
  SMACT-valid, which makes a reference set matched against itself score below 100% (some MP-20
  intermetallics fail SMACT). The composition is fixed by the CSP task, so SMACT says nothing there.
- Distribution distances use all valid generated structures (CDVAE draws 1000 of them).

Costs (2 CPU cores here): ``matminer`` import ~3 s (done lazily inside functions); CrystalNN
fingerprint ~25 ms per site (~5 min for the 1,130 mp_20 test structures); Magpie ~2.5 ms per
structure; ``StructureMatcher.get_rms_dist`` ~1-100 ms per pair. Dependency: ``matminer`` (which
needs pandas < 3) and ``smact``.

This module is the bundle (:func:`generation_metrics`, :func:`evaluate`); each measure lives in its
own module, :mod:`~ase_unimat.evaluation.validity`, :mod:`~ase_unimat.evaluation.coverage`,
:mod:`~ase_unimat.evaluation.distributions` and :mod:`~ase_unimat.evaluation.csp`, and is
re-exported here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ase_unimat.core.chemistry import composition_validity
from ase_unimat.core.representation import to_structure
from ase_unimat.evaluation.coverage import COVERAGE_CUTOFFS, CompositionScaler, Fingerprints, coverage, fingerprints
from ase_unimat.evaluation.csp import CSP_MATCHER, csp_match, pair_predictions
from ase_unimat.evaluation.distributions import density_wasserstein, num_elements_wasserstein
from ase_unimat.evaluation.validity import MIN_DISTANCE, MIN_VOLUME, min_interatomic_distance, structure_validity

__all__ = [
    "COVERAGE_CUTOFFS",
    "CSP_MATCHER",
    "MIN_DISTANCE",
    "MIN_VOLUME",
    "CompositionScaler",
    "Fingerprints",
    "composition_validity",
    "coverage",
    "csp_match",
    "density_wasserstein",
    "evaluate",
    "fingerprints",
    "generation_metrics",
    "min_interatomic_distance",
    "num_elements_wasserstein",
    "pair_predictions",
    "structure_validity",
]


def generation_metrics(
    generated: Sequence[Any],
    reference: Sequence[Any],
    *,
    dataset: str | None = "mp_20",
    struct_cutoff: float | None = None,
    comp_cutoff: float | None = None,
    reference_fingerprints: Fingerprints | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Validity, coverage and distribution distances of ``generated`` against ``reference``.

    Parameters
    ----------
    generated, reference
        Structures (``ase.Atoms`` or pymatgen ``Structure``).
    dataset
        Key of :data:`COVERAGE_CUTOFFS` giving the coverage cutoffs (explicit cutoffs win).
    struct_cutoff, comp_cutoff
        Coverage cutoffs overriding the dataset's.
    reference_fingerprints
        Precomputed :func:`fingerprints` of ``reference`` (they are the slow part).
    """
    if not generated:
        raise ValueError("no generated structures")
    if not reference:
        raise ValueError("no reference structures")
    if dataset is not None and dataset not in COVERAGE_CUTOFFS:
        raise ValueError(f"unknown dataset {dataset!r}; known: {', '.join(COVERAGE_CUTOFFS)}")
    default_struct, default_comp = COVERAGE_CUTOFFS[dataset] if dataset else (None, None)
    struct_cutoff = default_struct if struct_cutoff is None else struct_cutoff
    comp_cutoff = default_comp if comp_cutoff is None else comp_cutoff
    if struct_cutoff is None or comp_cutoff is None:
        raise ValueError("give a dataset or both coverage cutoffs")
    gen = [to_structure(s) for s in generated]
    ref = [to_structure(s) for s in reference]
    struct_valid = np.array([structure_validity(s) for s in gen])
    comp_valid = np.array([composition_validity(s) for s in gen])
    valid = struct_valid & comp_valid
    gen_fp = fingerprints(gen, progress=progress)
    valid &= gen_fp.ok  # CDVAE: a structure without fingerprint is invalid
    ref_fp = reference_fingerprints if reference_fingerprints is not None else fingerprints(ref, progress=progress)
    if len(ref_fp) != len(ref):
        raise ValueError(f"{len(ref_fp)} reference fingerprints for {len(ref)} reference structures")
    valid_gen = [s for s, v in zip(gen, valid, strict=True) if v]
    out: dict[str, Any] = {
        "n_generated": len(gen),
        "n_reference": len(ref),
        "struct_valid": float(struct_valid.mean()),
        "comp_valid": float(comp_valid.mean()),
        "valid": float(valid.mean()),
        "wdist_density": density_wasserstein(valid_gen, ref) if valid_gen else math.nan,
        "wdist_num_elems": num_elements_wasserstein(valid_gen, ref) if valid_gen else math.nan,
        "struct_cutoff": float(struct_cutoff),
        "comp_cutoff": float(comp_cutoff),
    }
    out.update(coverage(gen_fp, ref_fp, struct_cutoff=struct_cutoff, comp_cutoff=comp_cutoff))
    return out


def evaluate(
    generated: Sequence[Any],
    reference: Sequence[Any],
    *,
    dataset: str | None = "mp_20",
    csp: bool = False,
    k: int = 1,
    progress: bool = False,
) -> dict[str, Any]:
    """Generation metrics of ``generated`` against ``reference``, plus CSP match when ``csp``.

    For CSP the predictions are grouped with :func:`pair_predictions` (``k`` per reference). With
    ``progress``, the slow stages (fingerprints, matching) show progress bars.
    """
    out: dict[str, Any] = {"generation": generation_metrics(generated, reference, dataset=dataset, progress=progress)}
    if csp:
        pairs = pair_predictions(generated, reference, k=k)
        out["csp"] = csp_match(pairs, reference, k=max(1, max(len(p) for p in pairs)), progress=progress)
    return out
