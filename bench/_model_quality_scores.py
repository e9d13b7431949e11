"""The model-quality benchmark's CSP and generative scores of the samples against the test structures.

It owns :func:`csp_scores` (match@1 / RMSE@1 over every sampled structure, match@k / RMSE@k over
the top-k subset) and :func:`generative_scores` (``metrics.generation_metrics`` with the mp_20
coverage cutoffs), with the reference fingerprints cached on disk by content
(:func:`reference_fingerprints`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def csp_scores(
    samples: dict[int, list[Any]], references: Sequence[Any], topk_indices: Sequence[int], *, k: int
) -> dict[str, Any]:
    """match@1 / RMSE@1 over every sampled reference, match@k / RMSE@k over ``topk_indices``."""
    from ase_unimat.evaluation.csp import CSP_MATCHER, csp_match

    indices = sorted(samples)
    at_1 = csp_match([samples[i][:1] for i in indices], [references[i] for i in indices], k=1)
    out: dict[str, Any] = {"matcher": dict(CSP_MATCHER), "n": at_1["n"], "match_rate_at_1": at_1["match_rate_at_1"],
                           "rmse_at_1": at_1["rmse_at_1"]}  # fmt: skip
    if topk_indices:
        at_k = csp_match([samples[i][:k] for i in topk_indices], [references[i] for i in topk_indices], k=k)
        out.update({"k": k, "n_topk": at_k["n"], "match_rate_at_1_topk_subset": at_k["match_rate_at_1"],
                    f"match_rate_at_{k}": at_k["match_rate_at_k"], f"rmse_at_{k}": at_k["rmse_at_k"]})  # fmt: skip
    return out


def reference_fingerprints(references: Sequence[Any], cache_dir: Path | None) -> Any:
    """``coverage.fingerprints`` of ``references``, read from / written to ``cache_dir`` (keyed by content)."""
    import numpy as np

    from ase_unimat.evaluation.coverage import Fingerprints, fingerprints

    digest = hashlib.sha1()
    for atoms in references:
        digest.update(np.asarray(atoms.numbers, dtype=np.int64).tobytes())
        digest.update(np.round(np.asarray(atoms.cell.array, dtype=np.float64), 6).tobytes())
        digest.update(np.round(np.asarray(atoms.get_scaled_positions(), dtype=np.float64), 6).tobytes())
    path = None if cache_dir is None else Path(cache_dir) / f"fingerprints-{digest.hexdigest()[:16]}.npz"
    if path is not None and path.exists():
        data = np.load(path)
        return Fingerprints(structure=data["structure"], composition=data["composition"])
    result = fingerprints(list(references))
    if path is not None:
        from ase_unimat.core.atomic import atomic_write

        atomic_write(path, lambda handle: np.savez(handle, structure=result.structure, composition=result.composition))
    return result


def generative_scores(
    generated: Sequence[Any], references: Sequence[Any], *, cache_dir: Path | None
) -> dict[str, Any]:
    """``metrics.generation_metrics`` (mp_20 cutoffs) of ``generated`` against ``references``."""
    from ase_unimat.evaluation.metrics import generation_metrics

    ref_fp = reference_fingerprints(references, cache_dir)
    out = generation_metrics(list(generated), list(references), dataset="mp_20", reference_fingerprints=ref_fp)
    out["note"] = ("compositions are given (CSP setting): each generated structure has its test structure's "
                   "composition, so comp_valid and wdist_num_elems describe the test set, not the model")  # fmt: skip
    return out
