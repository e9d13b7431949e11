"""De novo generation (no formula) on our data: the paper's MP-20 table -- validity, coverage, distances, stability.

Run:  nice -n 5 python -m bench de_novo [--quick]
      (the shipped models/unimat-mp20; another model: UNIMAT_DE_NOVO_MODEL=path/to/model.pt, or from
      Python ``run(quick=False, out_dir=..., model=..., n=500, n_stability=20)``)

Protocol: ``generate(n=N, seed=0)`` with no formula -- each sample's composition drawn from the
model's training compositions (``composition_prior``), the default sampler, and for a space-group
model the default space-group mode -- then, with the instruments the model-quality benchmark uses:

- ``metrics.generation_metrics`` against all of mp_20/test: structure validity (all distances
  >= 0.5 A, volume >= 0.1 A^3), composition validity (SMACT), COV-R / COV-P at CDVAE's MP-20
  cutoffs (structure 0.4, composition 10), Wasserstein distances of density and of #elements;
- ``_model_quality_stability.stability_scores``: a seeded subset of ``n_stability`` samples relaxed with
  CHGNet (FIRE + FrechetCellFilter, fmax 0.05, <= 500 steps) and placed on a hull of competing
  phases from the shared data; share with E_hull <= 0.1 eV/atom and S.U.N. (stable, unique within
  the subset, novel against the model's training set).

The anchors are the numbers the papers report on the full MP-20 (their test split has 9,046
structures, ours 1,130; their models sample 10,000 structures). Writes de_novo.json (runner),
de_novo.md (the table) and de_novo.png (density and #elements histograms, generated vs test).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

#: As reported for MP-20 ab initio generation: UniMat (Yang et al. 2024), CDVAE and DiffCSP (the
#: values of the DiffCSP paper's generation table, Jiao et al. 2023). None: not reported there.
ANCHORS = {
    "UniMat (paper)": {"struct_valid": 0.972, "comp_valid": 0.894, "cov_recall": 0.998, "cov_precision": 0.997,
                       "wdist_density": None, "wdist_num_elems": None},
    "CDVAE (paper)": {"struct_valid": 1.0, "comp_valid": 0.867, "cov_recall": 0.9915, "cov_precision": 0.9949,
                      "wdist_density": 0.6875, "wdist_num_elems": 1.432},
    "DiffCSP (paper)": {"struct_valid": 1.0, "comp_valid": 0.8325, "cov_recall": 0.9971, "cov_precision": 0.9976,
                        "wdist_density": 0.3502, "wdist_num_elems": 0.3398},
}  # fmt: skip
COLUMNS = (("struct_valid", "struct. valid", True), ("comp_valid", "comp. valid", True),
           ("cov_recall", "COV-R", True), ("cov_precision", "COV-P", True),
           ("wdist_density", "W(density)", False), ("wdist_num_elems", "W(#elem)", False))  # fmt: skip
CACHE_DIR = Path(__file__).resolve().parent / ".cache" / "model_quality"


def run(*, quick: bool, out_dir: Path, model: str | None = None, n: int | None = None,
        n_stability: int | None = None, seed: int = 0) -> dict:  # fmt: skip
    """De novo samples scored as the paper's MP-20 table (validity, COV, distances, CHGNet E_hull, S.U.N.)."""
    import torch

    from ase_unimat.generation import generate, load_model
    from bench._model_quality_data import load_test_set
    from bench._model_quality_scores import generative_scores
    from bench._model_quality_settings import DEFAULT
    from bench._model_quality_stability import stability_scores
    from bench.bench_model_quality import default_training, model_identity

    torch.set_num_threads(1)
    model = model or os.environ.get("UNIMAT_DE_NOVO_MODEL") or None
    n = n or (60 if quick else 500)
    n_stability = n_stability if n_stability is not None else (4 if quick else 20)
    wall: dict[str, float] = {}
    start = time.perf_counter()
    net = load_model(model, device="cpu")
    samples = generate(n=n, model=net, seed=seed, device="cpu")
    wall["sampling"] = round(time.perf_counter() - start, 1)
    start = time.perf_counter()
    references, source = load_test_set()
    generation = generative_scores(samples, references, cache_dir=CACHE_DIR)
    generation["note"] = "de novo: compositions drawn from the model's training compositions"
    wall["generation_metrics"] = round(time.perf_counter() - start, 1)
    print({k: v for k, v in generation.items() if isinstance(v, float)}, flush=True)
    stability: dict[str, Any] = {"skipped": "n_stability = 0"}
    if n_stability:
        from ase_unimat.evaluation.reference import HULL_SOURCES, load_reference_records

        start = time.perf_counter()
        settings = replace(DEFAULT, n_stability=n_stability, seed=seed)
        stability = stability_scores(list(enumerate(samples)), settings=settings,
                                     hull_records=load_reference_records(sources=HULL_SOURCES),
                                     training=_training(model, net, default_training),
                                     training_label="the model's training set", cache_dir=CACHE_DIR, say=print)  # fmt: skip
        stability["e_hull"] = [None if x is None or not math.isfinite(x) else round(float(x), 5)
                               for x in stability.get("e_hull", [])]  # fmt: skip
        wall["stability"] = round(time.perf_counter() - start, 1)
    sources = {}
    for atoms in samples:
        key = atoms.info.get("composition_source", "?")
        sources[key] = sources.get(key, 0) + 1
    result = {
        "model": model_identity(model),
        "n_samples": n,
        "sampler": samples[0].info["sampler"], "steps": samples[0].info["steps"],
        "spacegroup_mode": "auto" if "spacegroup" in samples[0].info else "none",
        "composition_sources": sources,
        "reference_set": {"source": source, "n": len(references)},
        "generation": generation,
        "stability": stability,
        "anchors": ANCHORS,
        "wall_s": wall,
        "command": ("nice -n 5 python -m bench de_novo" + (" --quick" if quick else "")
                    + (f"  (UNIMAT_DE_NOVO_MODEL={model})" if model else "")),
    }  # fmt: skip
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = "de_novo_quick" if quick else "de_novo"
    (out_dir / f"{stem}.md").write_text(summary_markdown(result))
    plot(samples, references, out_dir / f"{stem}.png", title=f"de novo, {result['model'].get('name', model)}")
    return result


def _training(model, net, default_training) -> list:
    """Training structures for novelty: the model folder's reference.h5, else its train_data file."""
    from ase_unimat.data.hdf5 import read_atoms
    from ase_unimat.generation.plan import reference_dataset

    try:
        return default_training(model)
    except FileNotFoundError:
        path = reference_dataset(net)
        if path is None:
            raise
        return read_atoms(path)


def _fmt(value: Any, pct: bool) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{100 * value:.1f}" if pct else f"{value:.3f}"


def summary_markdown(result: dict[str, Any]) -> str:
    """The de novo table: ours beside the papers' anchors, then stability."""
    gen, stab = result["generation"], result["stability"]
    head = "| model | " + " | ".join(label for _, label, _ in COLUMNS) + " |"
    lines = [f"# De novo generation ({result['n_samples']} samples, {result['sampler']} {result['steps']} steps, "
             f"space group: {result['spacegroup_mode']})", "",
             f"Against {result['reference_set']['n']} mp_20/test structures (`{result['command']}`).", "",
             head, "|" + "---|" * (len(COLUMNS) + 1)]  # fmt: skip
    name = result["model"].get("name", "ours")
    lines.append(f"| **{name} (ours)** | " + " | ".join(_fmt(gen.get(k), p) for k, _, p in COLUMNS) + " |")
    for anchor, values in result["anchors"].items():
        lines.append(f"| {anchor} | " + " | ".join(_fmt(values.get(k), p) for k, _, p in COLUMNS) + " |")
    lines += ["", "Validity and coverage in %; W = Wasserstein distance to the test set (lower is better). "
              "The papers use the full MP-20 test split (9,046) and 10,000 samples."]  # fmt: skip
    if "sun_rate" in stab:
        lines += ["", f"CHGNet stability of {stab['n']} relaxed samples: E_hull <= 0.1 eV/atom "
                  f"{100 * stab['frac_e_hull_le_0.1']:.0f} %, E_hull <= 0 {100 * stab['frac_e_hull_le_0']:.0f} %, "
                  f"unique {100 * stab['uniqueness']:.0f} %, novel {100 * stab['novelty']:.0f} %, "
                  f"S.U.N. {100 * stab['sun_rate']:.0f} % (median E_hull {stab['e_hull_median']:.3f} eV/atom)."]  # fmt: skip
    else:
        lines += ["", f"Stability: {stab.get('skipped', 'not run')}."]
    return "\n".join(lines) + "\n"


def plot(samples, references, path: Path, *, title: str) -> None:
    """Density and #elements histograms of the samples against the test set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    def density(atoms):
        return float(atoms.get_masses().sum() / atoms.get_volume() * 1.66054)

    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    for data, label in ((samples, "generated"), (references, "mp_20/test")):
        axes[0].hist([density(a) for a in data], bins=np.linspace(0, 12, 49), density=True, alpha=0.5, label=label)
        counts = [len(set(a.get_chemical_symbols())) for a in data]
        axes[1].hist(counts, bins=np.arange(0.5, 7.5), density=True, alpha=0.5, label=label)
    axes[0].set_xlabel("density (g/cm$^3$)")
    axes[1].set_xlabel("distinct elements")
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
