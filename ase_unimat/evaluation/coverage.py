"""Coverage COV-R / COV-P of the CDVAE protocol: fingerprints, their scaling, and the share of close pairs.

Per structure the CrystalNN "ops" site fingerprint averaged over sites (61 numbers) and the Magpie
composition fingerprint (132, standardised by :class:`CompositionScaler`, fitted on the reference
set unless given); a generated and a reference structure are close when both Euclidean distances are
within the cutoffs (:data:`COVERAGE_CUTOFFS`, the published ones). ``matminer`` (optional, slow to
import) is loaded inside :func:`fingerprints`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ase_unimat.core.representation import to_structure

#: Published coverage cutoffs (struct, comp) per dataset, from CDVAE/DiffCSP ``COV_Cutoffs``.
COVERAGE_CUTOFFS: dict[str, tuple[float, float]] = {
    "mp_20": (0.4, 10.0),
    "carbon_24": (0.2, 4.0),
    "perov_5": (0.2, 4.0),
}


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
