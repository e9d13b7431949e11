"""Can the UniMat model rank prototype templates better than the chemical-distance prior?

Question (issue 7): unimat-template seeds hit the held-out ground state mostly from the first few
templates, so a better order of the candidates would mean fewer relaxations. The diffusion loss
of a candidate under the model (lower: more plausible for that composition) is a natural score.

Protocol
- **Targets**: ``mp_20/test`` structures of 7-20 atoms whose reduced formula is in no training
  data, one per formula, without the default search-efficiency targets; shuffled with seed 7; the
  first ``n_targets`` that have at least 3 template candidates in the bundled model's training set.
- **Candidates**: the first ``max_candidates`` of ``TemplateIndex.candidates`` (its order: supercell
  factor, chemical-distance prior, reference row -- the ``template`` seed order).
- **Match**: a candidate matches when pymatgen's ``StructureMatcher(ltol=0.3, stol=0.5,
  angle_tol=10)`` fits it to the test structure (unrelaxed, a proxy for "relaxes to it").
- **Model score**: the per-candidate denoising loss (coordinate + lattice terms, as in training) at
  ``n_times`` stratified times ``t = (i + 0.5) / n_times`` with the same noise for every candidate
  of a target (common random numbers; :func:`ase_unimat.model.plausibility.plausibility`),
  averaged over all times or over the low-noise half; for a space-group model also conditioned on
  each candidate's own space group (spglib, ``symprec`` 0.1).
- **Rankings**: ``template order``, ``prior``, ``model``, ``model (t < 0.5)``, ``model + 0.1 prior``,
  and the same three with the own space group.
  Per ranking, over targets with at least one matching candidate: the share whose first match is
  at rank 1, <= 3, <= 10, and the mean reciprocal rank of the first match.

Run: ``python -m bench template_ranking`` (writes ``bench/results/template_ranking.json``;
``--quick``: 8 targets, 20 candidates).
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

DEFAULT = {"n_targets": 60, "max_candidates": 60, "n_times": 16, "target_seed": 7, "noise_seed": 0}
QUICK = {**DEFAULT, "n_targets": 8, "max_candidates": 20}
PRIOR_WEIGHT = 0.1


def ranking_targets(config: dict[str, Any]) -> list[Any]:
    """Held-out test records of 7-20 atoms (unseen formulas, no default search-efficiency target), shuffled."""
    from ase_unimat.evaluation.reference import TRAINING_SOURCES, load_reference_records
    from bench._search_efficiency_config import DEFAULT as SEARCH_DEFAULT
    from bench._search_efficiency_targets import held_out_targets

    seen = {r.reduced_formula for r in load_reference_records(None, sources=TRAINING_SOURCES, max_atoms=None)}
    excluded = {t.material_id for t in held_out_targets(SEARCH_DEFAULT)}
    by_formula: dict[str, Any] = {}
    for r in sorted(load_reference_records(None, sources=("mp_20/test",), max_atoms=20), key=lambda r: r.material_id):
        if 7 <= r.natoms <= 20 and r.reduced_formula not in seen and r.material_id not in excluded:
            by_formula.setdefault(r.reduced_formula, r)
    records = list(by_formula.values())
    order = np.random.default_rng(config["target_seed"]).permutation(len(records))
    return [records[i] for i in order]


RANKINGS: dict[str, Callable[[dict[str, np.ndarray]], np.ndarray]] = {
    "template order": lambda r: np.arange(len(r["prior"])),
    "prior": lambda r: r["prior"],
    "model": lambda r: r["coord"].mean(1) + r["lattice"].mean(1),
    "model (t < 0.5)": lambda r: (r["coord"] + r["lattice"])[:, : r["coord"].shape[1] // 2].mean(1),
    f"model + {PRIOR_WEIGHT} prior": lambda r: r["coord"].mean(1) + r["lattice"].mean(1) + PRIOR_WEIGHT * r["prior"],
    "model, own space group": lambda r: r["coord_sg"].mean(1) + r["lattice_sg"].mean(1),
    "model, own space group (t < 0.5)": lambda r: (r["coord_sg"] + r["lattice_sg"])[:, : r["coord_sg"].shape[1] // 2].mean(1),
    f"model, own space group + {PRIOR_WEIGHT} prior": lambda r: (r["coord_sg"].mean(1) + r["lattice_sg"].mean(1)
                                                                 + PRIOR_WEIGHT * r["prior"]),
}


def rank_metrics(rows: Sequence[dict[str, np.ndarray]]) -> dict[str, dict[str, float]]:
    """Per ranking: share of targets with the first match at rank 1 / <= 3 / <= 10, and its mean reciprocal rank."""
    rows = [r for r in rows if r["match"].any()]
    out = {}
    for name, key in RANKINGS.items():
        first = np.array([int(np.argmax(r["match"][np.argsort(key(r), kind="stable")])) for r in rows])
        out[name] = {"targets": len(rows), "at_1": float(np.mean(first < 1)), "at_3": float(np.mean(first < 3)),
                     "at_10": float(np.mean(first < 10)), "mrr": float(np.mean(1.0 / (first + 1)))}  # fmt: skip
    return out


def run(*, quick: bool = False, out_dir: Path | None = None) -> dict[str, Any]:
    """Score the candidates of each target with the bundled model and compare the rankings."""
    import torch
    from pymatgen.analysis.structure_matcher import StructureMatcher
    from pymatgen.core import Structure
    from pymatgen.io.ase import AseAtomsAdaptor

    from ase_unimat.generation import load_model
    from ase_unimat.model.plausibility import plausibility
    from ase_unimat.search.airss_io import spacegroup_number
    from ase_unimat.search.templates import NoTemplateError, TemplateIndex

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    config = QUICK if quick else DEFAULT
    start = time.perf_counter()
    net = load_model(None, device="cpu").eval()
    index = TemplateIndex.load(None)
    matcher = StructureMatcher(ltol=0.3, stol=0.5, angle_tol=10)
    rows, per_target = [], []
    for record in ranking_targets(config):
        try:
            found = index.candidates(record.counts)
        except NoTemplateError:
            continue
        n = min(config["max_candidates"], len(found))
        if n < 3:
            continue
        candidates = [found[i] for i in range(n)]
        truth = Structure.from_str(record.cif, fmt="cif")
        match = np.array([matcher.fit(AseAtomsAdaptor.get_structure(c.atoms), truth) for c in candidates])
        structures = [c.atoms for c in candidates]
        times = [(i + 0.5) / config["n_times"] for i in range(config["n_times"])]
        plain = plausibility(net, structures, times=times, draws=1, seed=config["noise_seed"])
        own = plausibility(net, structures, spacegroups=[spacegroup_number(a) for a in structures], times=times,
                           draws=1, seed=config["noise_seed"]) if net.spacegroup_conditioned else plain  # fmt: skip
        rows.append({"match": match, "prior": np.array([c.prior for c in candidates]), "coord": plain.coord,
                     "lattice": plain.lattice, "coord_sg": own.coord, "lattice_sg": own.lattice})  # fmt: skip
        per_target.append({"material_id": record.material_id, "formula": record.reduced_formula,
                           "natoms": record.natoms, "candidates": len(found),
                           "matching_ranks": np.nonzero(match)[0].tolist()})  # fmt: skip
        if len(rows) == config["n_targets"]:
            break
    return {"config": config, "model": getattr(net, "model_name", net.config.name), "rankings": rank_metrics(rows),
            "targets": per_target, "wall_s": time.perf_counter() - start}  # fmt: skip
