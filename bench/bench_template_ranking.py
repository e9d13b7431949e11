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
  of a target (common random numbers), averaged over all times or over the low-noise half.
- **Rankings**: ``template order``, ``prior``, ``model``, ``model (t < 0.5)``, ``model + 0.1 prior``.
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


def denoising_losses(net: Any, candidates: Sequence[Any], counts: dict[str, int], *, n_times: int,
                     seed: int) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Coordinate and lattice denoising losses ``(C, T)`` of each candidate at ``n_times`` stratified times."""
    import torch

    from ase_unimat.core.representation import encode
    from ase_unimat.generation import composition_for
    from ase_unimat.model.cell_reduction import reduce_cells
    from ase_unimat.model.diffusion import wrapped_normal_score

    encoded = [encode(a, n_slots=net.n_slots) for a in candidates]
    coords0 = torch.as_tensor(np.stack([c for c, _ in encoded]))  # (C, L, 9, 18, 3)
    lattice0 = torch.as_tensor(np.stack([lat for _, lat in encoded])).float()  # (C, 6)
    coords0, lattice0 = reduce_cells(coords0, lattice0)
    c = len(candidates)
    composition = torch.as_tensor(composition_for(net, counts), dtype=torch.float32).expand(c, -1, -1)  # (C, 9, 18)
    occupied = coords0[..., 0] > -0.5  # (C, L, 9, 18)
    weight = occupied.float()[..., None]  # (C, L, 9, 18, 1)
    generator = torch.Generator().manual_seed(seed)
    eps_x = torch.randn((n_times, *coords0.shape[1:]), generator=generator)  # same noise for every candidate
    eps_l = torch.randn((n_times, 6), generator=generator)
    z0 = net.scaler.encode(lattice0, composition.sum((1, 2)))  # (C, 6)
    coord_loss, lattice_loss = np.zeros((c, n_times)), np.zeros((c, n_times))
    with torch.no_grad():
        for i in range(n_times):
            t = torch.full((c,), (i + 0.5) / n_times)
            sigma = net.sigma(t).view(-1, 1, 1, 1, 1).expand_as(coords0)  # (C, L, 9, 18, 3)
            noisy = torch.remainder(coords0 + sigma * eps_x[i], 1.0)
            noisy = torch.where(occupied[..., None], noisy, torch.full_like(noisy, 0.5))
            ab = net.alpha_bar(t)[:, None]  # (C, 1)
            out = net.network(noisy, ab.sqrt() * z0 + (1 - ab).sqrt() * eps_l[i], t, composition)
            target = wrapped_normal_score(sigma * eps_x[i], sigma, n_images=net.config.diffusion.n_images)
            target = target / net.score_rms(sigma)
            coord_loss[:, i] = (((out.coords - target) ** 2 * weight).sum((1, 2, 3, 4)) / (3 * weight.sum((1, 2, 3, 4)))).numpy()
            lattice_loss[:, i] = ((out.lattice - eps_l[i]) ** 2).mean(1).numpy()
    return coord_loss, lattice_loss


RANKINGS: dict[str, Callable[[dict[str, np.ndarray]], np.ndarray]] = {
    "template order": lambda r: np.arange(len(r["prior"])),
    "prior": lambda r: r["prior"],
    "model": lambda r: r["coord"].mean(1) + r["lattice"].mean(1),
    "model (t < 0.5)": lambda r: (r["coord"] + r["lattice"])[:, : r["coord"].shape[1] // 2].mean(1),
    f"model + {PRIOR_WEIGHT} prior": lambda r: r["coord"].mean(1) + r["lattice"].mean(1) + PRIOR_WEIGHT * r["prior"],
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
        coord, lattice = denoising_losses(net, [c.atoms for c in candidates], dict(record.counts),
                                          n_times=config["n_times"], seed=config["noise_seed"])  # fmt: skip
        rows.append({"match": match, "prior": np.array([c.prior for c in candidates]), "coord": coord,
                     "lattice": lattice})  # fmt: skip
        per_target.append({"material_id": record.material_id, "formula": record.reduced_formula,
                           "natoms": record.natoms, "candidates": len(found),
                           "matching_ranks": np.nonzero(match)[0].tolist()})  # fmt: skip
        if len(rows) == config["n_targets"]:
            break
    return {"config": config, "model": getattr(net, "model_name", net.config.name), "rankings": rank_metrics(rows),
            "targets": per_target, "wall_s": time.perf_counter() - start}  # fmt: skip
