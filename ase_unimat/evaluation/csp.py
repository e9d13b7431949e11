"""CSP match rate and RMSE at 1 and at k samples, and the pairing of predictions with their references.

pymatgen ``StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3).get_rms_dist`` (:data:`CSP_MATCHER`),
whose RMS displacement is normalised by ``(V / n) ** (1/3)``; at k the best match among the first k
predictions counts; only the prediction must be structurally valid (DiffCSP also asks SMACT validity
of both). :func:`pair_predictions` groups predictions per reference, by ``material_id`` or by order.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ase_unimat.core.representation import to_structure
from ase_unimat.evaluation.validity import structure_validity

#: StructureMatcher tolerances of the CSP protocol.
CSP_MATCHER = {"stol": 0.5, "angle_tol": 10.0, "ltol": 0.3}


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
