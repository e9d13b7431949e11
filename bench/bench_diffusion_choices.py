"""Diffusion design choices measured: short trainings of the atom network, scored on mp_20/val.

Run:  python -m bench diffusion_choices [--quick]

Each variant changes one thing in the "cpu" config (coordinate target, lattice schedule, noise
range, cell reduction), trains with the project's trainer for the same number of steps on the
same data and seed, and is scored on the 123 validation structures: the trainer's validation loss
(comparable only between variants with the same targets), then ``k`` deterministic samples per
validation composition with CSP match rate (pymatgen StructureMatcher, as ``metrics.csp_match``),
structural validity (no two atoms closer than 0.5 A, volume > 0.1 A^3) and the median
``|log(V_sample / V_true)|``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

TRAIN = "/work/data/train_full.h5"
VAL = "/work/data/mp20_val.h5"
RAW_LATTICE = {  # statistics of the unreduced training cells (for reduce_cells = false)
    "lattice_mean": [0.9807, 1.0352, 1.2042, 85.5295, 85.5502, 85.6604],
    "lattice_std": [0.3067, 0.2736, 0.3515, 23.3699, 22.4649, 27.5006],
}
SMALL = {"width": 128, "pair_width": 64, "depth": 4, "heads": 4}  # the first "cpu" size, for cheap ablations
VARIANTS = {
    "baseline": {},
    "eps_target": {"diffusion": {"coord_target": "eps"}},
    "linear_beta": {"diffusion": {"lattice_schedule": "linear"}},
    "sigma_max_1": {"diffusion": {"sigma_max": 1.0}},
    "sigma_max_0.3": {"diffusion": {"sigma_max": 0.3}},
    "wider_deeper": {"model": {"width": 256, "pair_width": 128, "depth": 6, "heads": 8}},
    "small": {"model": SMALL},
    "small_no_slot_embedding": {"model": {**SMALL, "slot_embedding": False}},
    "small_time_power_2": {"model": SMALL, "diffusion": {"time_power": 2.0}},
    "unreduced_cells": {"diffusion": {"reduce_cells": False, **RAW_LATTICE}},
}


def variant_config(changes: dict, *, steps: int):
    """The "cpu" config with ``changes`` and a short-run training schedule."""
    from ase_unimat.model.config import from_dict, named_config, to_dict

    data = to_dict(named_config("cpu"))
    for section, values in changes.items():
        data[section].update(values)
    data["train"].update(train_data=TRAIN, val_data=VAL, total_steps=steps, warmup_steps=min(100, steps // 5),
                         ema_decay=0.99, checkpoint_every=steps, val_every=steps, log_every=max(steps // 10, 1))
    return from_dict(data)


def score_on_val(model, *, k: int, steps: int, sampler: str = "ddim", guidance: float | None = None) -> dict:
    """CSP match rate, validity and volume error of ``k`` samples per validation composition.

    ``model`` is a path or a loaded model.
    """
    import numpy as np

    from ase_unimat.data.hdf5 import read_atoms
    from ase_unimat.evaluation.csp import csp_match
    from ase_unimat.evaluation.validity import structure_validity
    from ase_unimat.generation import generate, load_model

    references = read_atoms(VAL)
    model = load_model(model, device="cpu")
    start = time.perf_counter()
    predictions = []
    for ref in references:
        counts = {}
        for symbol in ref.get_chemical_symbols():
            counts[symbol] = counts.get(symbol, 0) + 1
        predictions.append(generate(counts, n=k, model=model, steps=steps, seed=0, device="cpu", sampler=sampler,
                                    guidance=guidance))
    sample_s = time.perf_counter() - start
    flat = [(p, ref) for preds, ref in zip(predictions, references, strict=True) for p in preds]
    valid = [structure_validity(p) for p, _ in flat]
    volume_error = [abs(np.log(p.get_volume() / ref.get_volume())) for p, ref in flat]
    match = csp_match(predictions, references, k=k)
    return {
        "match_rate_at_1": match["match_rate_at_1"],
        f"match_rate_at_{k}": match["match_rate_at_k"],
        "rmse_at_k": match["rmse_at_k"],
        "validity": float(np.mean(valid)),
        "median_abs_log_volume_ratio": float(np.median(volume_error)),
        "lattice_repaired": float(np.mean([p.info["lattice_repaired"] for p, _ in flat])),
        "sampling_seconds": round(sample_s, 1),
    }


def run(*, quick: bool, out_dir: Path, steps: int | None = None, k: int | None = None, variants=None,
        keep_models: Path | None = None, threads: int = 1) -> dict:
    """Short trainings of the atom network per diffusion choice, scored on mp_20/val (CSP match, validity)."""
    import torch

    from ase_unimat.training.trainer import train

    steps = steps or (60 if quick else 700)
    k = k or (1 if quick else 4)
    names = variants or (["baseline", "eps_target"] if quick else list(VARIANTS))
    results = {}
    for name in names:
        config = variant_config(VARIANTS[name], steps=steps)
        torch.manual_seed(0)
        with tempfile.TemporaryDirectory() as tmp:
            result = train(config, out_dir=tmp, progress=False, device="cpu", overrides={"num_threads": threads})
            if keep_models is not None:
                Path(keep_models).mkdir(parents=True, exist_ok=True)
                shutil.copy(result.model, Path(keep_models) / f"{name}.pt")
            log = [json.loads(line) for line in (Path(tmp) / "log.jsonl").read_text().splitlines()]
            train_losses = [e for e in log if "loss" in e and "val_loss" not in e]
            entry = {
                "changes": VARIANTS[name],
                "train_seconds": round(result.wall_time, 1),
                "final_train_terms": {key: train_losses[-1][key] for key in ("coord", "lattice", "loss")},
                "val_loss": result.val_loss,
                **score_on_val(result.model, k=k, steps=50),
            }
        results[name] = entry
        print(name, json.dumps(entry))
    return {"train_steps": steps, "batch_size": 64, "samples_per_composition": k, "sampler": "ddim, 50 steps",
            "train_data": TRAIN, "val_data": VAL, "variants": results}
