"""Model quality on mp_20/test: CSP match rate, validity, coverage and CHGNet stability of the default model.

Run:  python -m bench model_quality [--quick]   (the shipped models/unimat-mp20; from Python:
      ``run(quick=False, out_dir=..., model="path/to/model.pt")`` or :func:`run_model_quality`)

Protocol (issue 7, with the instruments of ``ase_unimat.evaluation.metrics`` and ``ase_unimat.evaluation.sun``):

1. **CSP**. Each test structure's cell composition is sampled by the model (the sampler's own
   defaults: ancestral, the model's steps and guidance), all compositions of a batch together (the
   sampler draws each sample's noise from its own seed, so a structure equals
   ``generate(composition, seeds=[s])``). Sample ``j`` of test structure ``i`` uses seed
   ``seed * 1_000_000 + i * 100 + j``. One sample for every structure gives match@1 / RMSE@1; a
   seeded subset gets ``k`` samples (the first is the k = 1 sample) for match@k / RMSE@k
   (``metrics.csp_match``: StructureMatcher stol 0.5, angle_tol 10, ltol 0.3).
2. **Generative metrics** (``metrics.generation_metrics``, mp_20 coverage cutoffs) of the k = 1
   samples against the test set. The compositions are given (CSP setting), so composition validity
   and the element-count distance describe the test set more than the model.
3. **Stability** (``sun.stability_report``): a seeded subset of the k = 1 samples is relaxed
   (CHGNet, FIRE + FrechetCellFilter, fmax 0.05, <= 500 steps, 2 worker processes with one thread
   each) and placed on a hull of competing phases from the shared data (mp_20 train + extra MP,
   lowest-DFT-energy polymorph per formula) relaxed the same way -- only the chemical systems of the
   subset (that is how ``stability`` builds hulls), cached in ``bench/.cache/model_quality/``.
   Elemental references come from the data at any size, else from ``stability``'s fallbacks
   (boxed diatomic molecules, measured or approximate crystals), which exist for elements 1-94; a
   sample with an element that still has none would be passed over, and the result says how many
   were. Uniqueness within the subset; novelty against the model's training set
   (``models/<model>/reference.h5``); S.U.N. = stable (E_hull <= 0.1 eV/atom), unique and novel.

``--quick``: 40 test structures (all 40 sampled k times), coverage against those 40 only, 8
stability samples; otherwise the same protocol.
Outputs: ``<out>/model_quality[_quick].json`` (by the runner), ``.md`` (table) and ``.png``
(E_hull histogram).

The parts live in ``bench/_model_quality_settings.py`` (the settings), ``_model_quality_data.py``
(the test set, subsets and seeds), ``_model_quality_sampling.py`` (1), ``_model_quality_scores.py``
(1, 2), ``_model_quality_stability.py`` (3) and ``_model_quality_report.py`` (the outputs); this
module runs them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench._model_quality_data import load_test_set, seeded_subset
from bench._model_quality_report import plot_e_hull, summary_markdown
from bench._model_quality_sampling import csp_samples
from bench._model_quality_scores import csp_scores, generative_scores
from bench._model_quality_settings import DEFAULT, MAX_K, QUICK, QualitySettings
from bench._model_quality_stability import stability_scores

DEFAULT_CACHE_DIR = Path(__file__).resolve().parent / ".cache" / "model_quality"


def run(*, quick: bool, out_dir: Path, model=None) -> dict:
    """Default model on mp_20/test: CSP match@1/@4, validity, coverage, CHGNet E_hull and S.U.N."""
    stem = "model_quality_quick" if quick else "model_quality"
    return run_model_quality(QUICK if quick else DEFAULT, out_dir=Path(out_dir), model=model, stem=stem)


# ------------------------------------------------------------------------------------------------ run


def model_identity(model: Any) -> dict[str, Any]:
    """Name, file and training step of ``model`` (a path, a name, None or a loaded model)."""
    import torch

    from ase_unimat.model.bundled import resolve_model_path
    from ase_unimat.model.diffusion import UniMatModel

    if isinstance(model, UniMatModel):
        return {"name": getattr(model, "model_name", model.config.name), "path": None, "step": None}
    path = resolve_model_path(model)
    state = torch.load(path, map_location="cpu", weights_only=True)
    name = path.parent.name if path.name == "model.pt" else path.stem
    return {"name": name, "path": str(path), "step": state.get("step")}


def default_training(model: Any) -> list[Any]:
    """The model folder's ``reference.h5`` (its training structures) as ``ase.Atoms``."""
    from ase_unimat.data.hdf5 import read_atoms
    from ase_unimat.model.bundled import resolve_model_path

    path = resolve_model_path(model).parent / "reference.h5"
    if not path.exists():
        raise FileNotFoundError(f"no training reference {path}: pass training= structures for novelty")
    return read_atoms(path)


def run_model_quality(
    settings: QualitySettings,
    *,
    out_dir: Path,
    model: Any = None,
    references: Sequence[Any] | None = None,
    hull_records: Sequence[Any] | None = None,
    training: Sequence[Any] | None = None,
    cache_dir: Path | None = DEFAULT_CACHE_DIR,
    stem: str = "model_quality",
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Sample, score and write ``<out_dir>/<stem>.md`` and ``.png``; returns the JSON-ready result.

    Parameters
    ----------
    settings
        Sizes, seeds, sampler and relaxation settings (:data:`DEFAULT`, :data:`QUICK`).
    model
        Model path, name or object (None: the shipped default).
    references
        Test structures (default: mp_20/test via :func:`load_test_set`).
    hull_records
        Competing phases (default: ``reference_data.load_reference_records()`` of ``HULL_SOURCES``).
    training
        Training structures for novelty (default: the model folder's ``reference.h5``).
    cache_dir
        Hull energies and reference fingerprints (``None``: fingerprints uncached, hull energies in
        ``out_dir``).
    """
    import numpy as np
    import torch

    from ase_unimat.generation import load_model

    wall: dict[str, float] = {}
    start = time.perf_counter()
    torch.set_num_threads(settings.threads)
    identity = model_identity(model)
    net = load_model(model, device="cpu")
    source = "given"
    if references is None:
        references, source = load_test_set()
    references = list(references)
    wall["load"] = round(time.perf_counter() - start, 1)
    csp_indices = seeded_subset(range(len(references)), settings.n_csp, seed=settings.seed, salt=1)
    topk_indices = seeded_subset(csp_indices, settings.n_topk, seed=settings.seed, salt=2) if settings.k > 1 else []
    samples, sampling = csp_samples(net, references, csp_indices, topk_indices, settings=settings, say=say)
    wall.update({k: v for k, v in sampling.items() if k.startswith("sample_")})
    start = time.perf_counter()
    csp = csp_scores(samples, references, topk_indices, k=settings.k)
    wall["csp_match"] = round(time.perf_counter() - start, 1)
    say(f"CSP: {csp}")
    first = [(i, samples[i][0]) for i in csp_indices if samples[i]]
    start = time.perf_counter()
    coverage_refs = references if settings.coverage_reference == "all" else [references[i] for i in csp_indices]
    generation = generative_scores([a for _, a in first], coverage_refs, cache_dir=cache_dir)
    generation["n_reference"] = len(coverage_refs)
    generation["reference"] = "all test structures" if settings.coverage_reference == "all" else "sampled only"
    wall["generation_metrics"] = round(time.perf_counter() - start, 1)
    say(f"generation: { {k: v for k, v in generation.items() if isinstance(v, float)} }")
    stability: dict[str, Any] = {"skipped": "n_stability = 0"}
    if settings.n_stability:
        from ase_unimat.evaluation.reference import HULL_SOURCES, load_reference_records

        start = time.perf_counter()
        hull = list(hull_records) if hull_records is not None else load_reference_records(sources=HULL_SOURCES)
        train = list(training) if training is not None else default_training(model)
        label = "the given training set" if training is not None else "the model's training set (reference.h5)"
        stability = stability_scores(first, settings=settings, hull_records=hull, training=train, training_label=label,
                                     cache_dir=Path(cache_dir) if cache_dir is not None else Path(out_dir), say=say)  # fmt: skip
        wall["stability"] = round(time.perf_counter() - start, 1)
    net_cfg = net.config.diffusion
    result = {
        "model": identity,
        "reference_set": {"source": source, "n": len(references)},
        "settings": {**asdict(settings), "steps": settings.steps or net_cfg.default_steps,
                     "guidance": settings.guidance if settings.guidance is not None else net_cfg.default_guidance,
                     "corrector_steps": net_cfg.corrector_steps, "torch_threads": settings.threads,
                     "seed_formula": f"seed * 1_000_000 + test_index * {MAX_K} + sample",
                     "subsets": "numpy default_rng([seed, 1]) (CSP), [seed, 2] (k samples), [seed, 3] (stability)"},
        "csp": csp,
        "generation": generation,
        "stability": stability,
        "failed_samples": sampling["failed_samples"],
        "wall_s": wall,
        "samples": {"k1_seeds": [samples[i][0].info["seed"] for i in csp_indices if samples[i]]},
    }  # fmt: skip
    if "e_hull" in stability:
        stability["e_hull"] = [None if not np.isfinite(x) else round(float(x), 5) for x in stability["e_hull"]]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{stem}.md").write_text(summary_markdown(result))
    if stability.get("e_hull"):
        plot_e_hull(stability, out_dir / f"{stem}.png", title=f"{identity['name']} (step {identity['step']})")
    return result
