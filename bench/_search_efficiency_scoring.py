"""The search-efficiency benchmark's scoring: the hit rule, per-target statistics and the per-bin summary.

It owns :func:`is_hit` (finished, and the relaxed reference or an energy within
``ENERGY_TOLERANCE`` of it), :func:`score` (hits, ``p_est = (h + 0.5) / (N + 1)``, expected
relaxations, cost and best-energy curve of one source on one target) and :func:`summarise`
(geometric means per bin and source, and the source ratios of ``RATIOS``); the pooling of several
runs (``bench/search_efficiency_pool.py``) uses the same rules.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from bench._search_efficiency_config import ENERGY_TOLERANCE, RATIOS


def is_hit(result: Any, reference: Any, matcher: Any) -> bool:
    """Finished, and the reference structure or an energy within ``ENERGY_TOLERANCE`` of it."""
    if not result.ok:
        return False
    if result.energy / len(result.atoms) <= reference.energy / len(reference.atoms) + ENERGY_TOLERANCE:
        return True
    from pymatgen.io.ase import AseAtomsAdaptor

    return bool(
        matcher.fit(AseAtomsAdaptor.get_structure(result.atoms), AseAtomsAdaptor.get_structure(reference.atoms))
    )


def score(results: Sequence[Any], reference: Any, matcher: Any) -> dict[str, Any]:
    """Hit statistics, cost and best-energy curve of one source on one target (seeds in index order)."""
    n = len(results)
    hits = [is_hit(r, reference, matcher) for r in results]
    h = int(sum(hits))
    p_est = (h + 0.5) / (n + 1)
    e_ref = reference.energy / len(reference.atoms)
    above = [(r.energy / len(r.atoms) - e_ref) * 1000 if r.ok else math.inf for r in results]  # meV/atom
    best = np.minimum.accumulate(above).tolist()
    first_hit = next((k + 1 for k, hit in enumerate(hits) if hit), None)
    return {
        "n": n,
        "hits": h,
        "p": h / n,
        "p_est": p_est,
        "expected_relaxations": 1.0 / p_est,
        "censored": h == 0,
        "first_hit": first_hit,
        "steps_per_seed": float(np.mean([r.steps for r in results])),
        "wall_s_per_seed": float(np.mean([r.wall_time for r in results])),
        "failed": int(sum(not r.ok for r in results)),
        "best_mev_above_ref": best,
        "seeds": [
            {
                "id": r.id,
                "origin": r.seed_info.get("source", r.source),
                "status": r.status,
                "reason": r.reason,
                "energy_per_atom": r.energy / len(r.atoms) if r.ok else None,
                "steps": r.steps,
                "wall_s": round(r.wall_time, 2),
                "hit": hit,
            }
            for r, hit in zip(results, hits, strict=True)
        ],  # fmt: skip
    }


def geometric_mean(values: Sequence[float]) -> float:
    """Geometric mean (NaN for an empty list)."""
    return float(np.exp(np.mean(np.log(values)))) if len(values) else math.nan


def summarise(per_target: Sequence[Mapping[str, Any]], sources: Sequence[str], bins: Sequence[str]) -> dict[str, Any]:
    """Per bin: geometric-mean expected relaxations and cost per source, and source ratios."""
    out: dict[str, Any] = {}
    for name in bins:
        rows = [t for t in per_target if t["bin"] == name]
        table: dict[str, Any] = {}
        for source in sources:
            stats = [t["sources"][source] for t in rows if source in t["sources"]]
            if not stats:
                continue
            table[source] = {
                "targets": len(stats),
                "hits": int(sum(s["hits"] for s in stats)),
                "seeds": int(sum(s["n"] for s in stats)),
                "targets_hit": int(sum(s["hits"] > 0 for s in stats)),
                "expected_relaxations_geomean": geometric_mean([s["expected_relaxations"] for s in stats]),
                "steps_per_seed": float(np.mean([s["steps_per_seed"] for s in stats])),
                "wall_s_per_seed": float(np.mean([s["wall_s_per_seed"] for s in stats])),
            }
        ratios = {}
        for a, b in RATIOS:
            pairs = [t["sources"][a]["expected_relaxations"] / t["sources"][b]["expected_relaxations"]
                     for t in rows if a in t["sources"] and b in t["sources"]]  # fmt: skip
            if pairs:
                ratios[f"{a}/{b}"] = {"geomean": geometric_mean(pairs), "targets": len(pairs)}
        out[name] = {"sources": table, "ratios": ratios}
    return out
