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
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ase_unimat.core.chemistry import composition_validity
from ase_unimat.core.representation import to_structure

#: Published coverage cutoffs (struct, comp) per dataset, from CDVAE/DiffCSP ``COV_Cutoffs``.
COVERAGE_CUTOFFS: dict[str, tuple[float, float]] = {
    "mp_20": (0.4, 10.0),
    "carbon_24": (0.2, 4.0),
    "perov_5": (0.2, 4.0),
}

#: StructureMatcher tolerances of the CSP protocol.
CSP_MATCHER = {"stol": 0.5, "angle_tol": 10.0, "ltol": 0.3}

MIN_DISTANCE = 0.5  # A
MIN_VOLUME = 0.1  # A^3


# ----------------------------------------------------------------------------------------- validity


def min_interatomic_distance(structure: Any) -> float:
    """Shortest distance between any two atoms, periodic images (also an atom's own) included, in A."""
    structure = to_structure(structure)
    # Shortest non-zero lattice vector: search small combinations of the LLL-reduced basis.
    basis = structure.lattice.get_lll_reduced_lattice().matrix  # (3, 3)
    shifts = np.array([s for s in itertools.product((-1, 0, 1), repeat=3) if any(s)])  # (26, 3)
    self_image = float(np.linalg.norm(shifts @ basis, axis=1).min())
    if len(structure) < 2:
        return self_image
    dist = structure.distance_matrix  # (n, n) minimum-image distances
    dist = dist + np.diag(np.full(len(structure), np.inf))
    return float(min(dist.min(), self_image))


def structure_validity(structure: Any, *, min_distance: float = MIN_DISTANCE, min_volume: float = MIN_VOLUME) -> bool:
    """True when the cell volume is >= ``min_volume`` and no two atoms are closer than ``min_distance``."""
    structure = to_structure(structure)
    volume = float(structure.volume)
    if not np.isfinite(volume) or volume < min_volume:
        return False
    if not np.all(np.isfinite(structure.frac_coords)):
        return False
    return min_interatomic_distance(structure) >= min_distance


@dataclass(frozen=True)
class Fingerprints:
    """Per-structure fingerprints; a row of NaN marks a structure whose fingerprint failed."""

    structure: np.ndarray  # (N, 61) CrystalNN "ops" site fingerprints averaged over sites
    composition: np.ndarray  # (N, 132) Magpie ElementProperty, unscaled (NaN where a property is missing)

    def __len__(self) -> int:
        return int(self.structure.shape[0])

    @property
    def ok(self) -> np.ndarray:
        """(N,) bool: both fingerprints computed."""
        return ~np.all(np.isnan(self.structure), axis=1) & ~np.all(np.isnan(self.composition), axis=1)


def fingerprints(structures: Sequence[Any], *, progress: bool = False) -> Fingerprints:
    """CrystalNN (mean over sites) and Magpie fingerprints of each structure (~25 ms per site); a bar with ``progress``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # matminer is optional and slow to import (~4 s): pip install '.[metrics]'
        from matminer.featurizers.composition.composite import ElementProperty
        from matminer.featurizers.site.fingerprint import CrystalNNFingerprint

        site_featurizer = CrystalNNFingerprint.from_preset("ops")
        comp_featurizer = ElementProperty.from_preset("magpie", impute_nan=False)
        n_struct = len(site_featurizer.feature_labels())
        n_comp = len(comp_featurizer.feature_labels())
        struct_fp = np.full((len(structures), n_struct), np.nan)
        comp_fp = np.full((len(structures), n_comp), np.nan)
        for i, obj in enumerate(tqdm(structures, desc="fingerprints", unit="structure", disable=not progress)):
            structure = to_structure(obj)
            try:
                sites = [site_featurizer.featurize(structure, j) for j in range(len(structure))]
                comp = comp_featurizer.featurize(structure.composition)
            except Exception:  # noqa: BLE001 - CDVAE counts a structure whose fingerprint fails as invalid
                continue
            struct_fp[i] = np.mean(np.asarray(sites, dtype=np.float64), axis=0)
            comp_fp[i] = np.asarray(comp, dtype=np.float64)
    return Fingerprints(structure=struct_fp, composition=comp_fp)


@dataclass(frozen=True)
class CompositionScaler:
    """Standardises Magpie fingerprints; NaN entries become 0 after scaling (as CDVAE)."""

    means: np.ndarray  # (132,)
    stds: np.ndarray  # (132,)

    @classmethod
    def fit(cls, composition_fps: np.ndarray) -> CompositionScaler:
        """Means and standard deviations over rows, ignoring NaN; a zero or undefined std becomes 1."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            means = np.nanmean(composition_fps, axis=0)
            stds = np.nanstd(composition_fps, axis=0)
        means = np.where(np.isfinite(means), means, 0.0)
        stds = np.where(np.isfinite(stds) & (stds > 0), stds, 1.0)
        return cls(means=means, stds=stds)

    def transform(self, composition_fps: np.ndarray) -> np.ndarray:
        """(N, 132) -> (N, 132) standardised, NaN -> 0."""
        return np.nan_to_num((composition_fps - self.means) / self.stds, nan=0.0)


def coverage(
    generated: Fingerprints,
    reference: Fingerprints,
    *,
    struct_cutoff: float,
    comp_cutoff: float,
    comp_scaler: CompositionScaler | None = None,
) -> dict[str, float]:
    """COV-R, COV-P and the mean nearest distances (AMSD/AMCD) as in CDVAE's ``compute_cov``.

    Generated structures whose fingerprint failed count in the COV-P denominator but match nothing;
    reference structures whose fingerprint failed are left out.
    """
    if len(generated) == 0 or len(reference) == 0:
        raise ValueError("coverage needs at least one generated and one reference structure")
    from scipy.spatial.distance import cdist  # scipy is slow to import

    ref_ok = reference.ok
    gen_ok = generated.ok
    if not ref_ok.any():
        raise ValueError("no reference structure has a fingerprint")
    scaler = comp_scaler or CompositionScaler.fit(reference.composition[ref_ok])
    gen_s, ref_s = generated.structure[gen_ok], reference.structure[ref_ok]  # (G, 61), (R, 61)
    gen_c = scaler.transform(generated.composition[gen_ok])  # (G, 132)
    ref_c = scaler.transform(reference.composition[ref_ok])  # (R, 132)
    if len(gen_s) == 0:
        return {"cov_recall": 0.0, "cov_precision": 0.0, "amsd_recall": math.nan, "amsd_precision": math.nan,
                "amcd_recall": math.nan, "amcd_precision": math.nan}  # fmt: skip
    struct_dist = cdist(gen_s, ref_s)  # (G, R)
    comp_dist = cdist(gen_c, ref_c)  # (G, R)
    close = (struct_dist <= struct_cutoff) & (comp_dist <= comp_cutoff)  # (G, R)
    return {
        "cov_recall": float(np.mean(close.any(axis=0))),
        "cov_precision": float(np.sum(close.any(axis=1)) / len(generated)),
        "amsd_recall": float(struct_dist.min(axis=0).mean()),
        "amsd_precision": float(struct_dist.min(axis=1).mean()),
        "amcd_recall": float(comp_dist.min(axis=0).mean()),
        "amcd_precision": float(comp_dist.min(axis=1).mean()),
    }


# ------------------------------------------------------------------------------ distribution distances


def density_wasserstein(generated: Sequence[Any], reference: Sequence[Any]) -> float:
    """Wasserstein-1 distance between the densities (g/cm^3) of two sets of structures."""
    from scipy.stats import wasserstein_distance  # scipy is slow to import

    if not generated or not reference:
        raise ValueError("density distance needs non-empty generated and reference sets")
    gen = [float(to_structure(s).density) for s in generated]
    ref = [float(to_structure(s).density) for s in reference]
    return float(wasserstein_distance(gen, ref))


def num_elements_wasserstein(generated: Sequence[Any], reference: Sequence[Any]) -> float:
    """Wasserstein-1 distance between the numbers of distinct elements of two sets of structures."""
    from scipy.stats import wasserstein_distance  # scipy is slow to import

    if not generated or not reference:
        raise ValueError("element-count distance needs non-empty generated and reference sets")
    gen = [len(to_structure(s).composition.elements) for s in generated]
    ref = [len(to_structure(s).composition.elements) for s in reference]
    return float(wasserstein_distance(gen, ref))


# ------------------------------------------------------------------------------------------ CSP match


def csp_match(
    predictions: Sequence[Sequence[Any]],
    references: Sequence[Any],
    *,
    k: int | None = None,
    progress: bool = False,
    stol: float = CSP_MATCHER["stol"],
    angle_tol: float = CSP_MATCHER["angle_tol"],
    ltol: float = CSP_MATCHER["ltol"],
) -> dict[str, Any]:
    """Match rate and normalised RMSE of predicted structures against their references, at 1 and at k.

    Parameters
    ----------
    predictions
        ``predictions[i]`` lists the candidates for ``references[i]``, best-ranked first.
    references
        The true structures.
    k
        Samples counted for the "at k" numbers (default: the most candidates any reference has).

    Returns
    -------
    dict
        ``match_rate_at_1``, ``rmse_at_1``, ``match_rate_at_k``, ``rmse_at_k``, ``k``, ``n`` and
        ``rms`` (per reference: best RMS among the first k, NaN when none matched). RMSE is NaN when
        nothing matched.
    """
    from pymatgen.analysis.structure_matcher import StructureMatcher  # pymatgen is slow to import

    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} prediction lists for {len(references)} references")
    if not references:
        raise ValueError("csp_match needs at least one reference")
    k = k or max((len(p) for p in predictions), default=1)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    matcher = StructureMatcher(stol=stol, angle_tol=angle_tol, ltol=ltol)
    rms = np.full((len(references), k), np.nan)  # (R, k)
    pairs = tqdm(zip(predictions, references, strict=True), total=len(references), desc="CSP match", unit="structure",
                 disable=not progress)  # fmt: skip
    for i, (candidates, ref) in enumerate(pairs):
        ref_structure = to_structure(ref)
        for j, candidate in enumerate(list(candidates)[:k]):
            structure = to_structure(candidate)
            if not structure_validity(structure):
                continue
            try:
                result = matcher.get_rms_dist(structure, ref_structure)
            except Exception:  # noqa: BLE001 - a matcher failure is "no match", as in CDVAE/DiffCSP
                result = None
            if result is not None:
                rms[i, j] = float(result[0])
    at_1 = rms[:, 0]  # (R,)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        at_k = np.nanmin(rms, axis=1)  # (R,)
    return {
        "n": len(references),
        "k": int(k),
        "match_rate_at_1": float(np.mean(np.isfinite(at_1))),
        "rmse_at_1": _nanmean(at_1),
        "match_rate_at_k": float(np.mean(np.isfinite(at_k))),
        "rmse_at_k": _nanmean(at_k),
        "rms": at_k.tolist(),
    }


def _nanmean(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else math.nan


# ------------------------------------------------------------------------------------------- bundle


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


def pair_predictions(predictions: Sequence[Any], references: Sequence[Any], *, k: int = 1) -> list[list[Any]]:
    """Group CSP predictions per reference: by ``info["material_id"]`` when every prediction and
    reference has one, else by order (predictions ``i*k .. i*k+k-1`` belong to reference ``i``)."""
    ref_ids = [getattr(r, "info", {}).get("material_id") for r in references]
    pred_ids = [getattr(p, "info", {}).get("material_id") for p in predictions]
    if all(ref_ids) and all(pred_ids):
        groups: dict[str, list[Any]] = {str(i): [] for i in ref_ids}
        for pid, pred in zip(pred_ids, predictions, strict=True):
            if str(pid) not in groups:
                raise ValueError(f"prediction for material_id {pid!r}, which is not among the references")
            groups[str(pid)].append(pred)
        return [groups[str(i)] for i in ref_ids]
    if k < 1 or len(predictions) != k * len(references):
        raise ValueError(
            f"{len(predictions)} predictions for {len(references)} references at k={k}: without material_id "
            f"in atoms.info, predictions must be k per reference, in reference order"
        )
    return [list(predictions[i * k : (i + 1) * k]) for i in range(len(references))]


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
