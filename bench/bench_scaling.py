"""Scaling on our data (the paper's RQ2): validation loss and CSP match against data size and model size.

Run:  python -m bench scaling [--quick]     (bench/results/scaling.{json,png,md})

Runs compared, each an atom network trained with the same diffusion and optimiser settings
(batch 64, AdamW 1e-3, cosine, EMA 0.999) and validated on the 123 ``mp_20/val`` structures:

| run | data | network | weights and log |
|---|---|---|---|
| unimat-mp20 | 6,045 (mp_20/train + extra_mp) | width 128, depth 4 | models/unimat-mp20/ |
| unimat-mp20-wide | 6,045 | width 256, depth 6 | models/unimat-mp20-wide/ |
| mp-wide-20k | 20,000 of the 77,769 (``ase_unimat.data.subset``, seed 0) | width 256, depth 6, space group | bench/results/scaling_runs/ |
| mp-wide-small | 77,769 (mp_20/train + extra_mp + mp_all) | width 128, depth 4, space group | bench/results/scaling_runs/ |
| unimat-mp-wide | 77,769 | width 256, depth 6, space group | models/unimat-mp-wide/ |

(the parameter count of each is read from its weights). Three measures:

* the EMA validation loss the trainer logged every 1,000 steps (curves against steps). A
  space-group model's logged loss has its condition present on 90 % of the structures (dropped on
  10 %, as in training), which lowers it a little against the others;
* for each exported ``model.pt``, the validation loss with the condition *absent* for every
  structure (``spacegroup`` not given: what an unconditioned model sees), at fixed noise seeds (8
  draws per structure), so the exports compare like for like -- at their own final steps, which
  differ (the table says which);
* CSP on held-out ``mp_20/test`` rows (100 drawn with numpy seed 0, 8 samples each, ancestral 50
  steps, no space-group condition for any model, sample seeds ``1000 * row + j``):
  :func:`ase_unimat.evaluation.csp.csp_match` at 1 and at 8.

The two runs in ``bench/results/scaling_runs/`` exist for this benchmark only (not shipped
models); their folders hold the trainer's config, log and EMA export, and their commands are in
``bench/results/scaling_runs/README.md``.
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = (  # name, folder, training structures
    ("unimat-mp20", "models/unimat-mp20", 6045),
    ("unimat-mp20-wide", "models/unimat-mp20-wide", 6045),
    ("mp-wide-20k", "bench/results/scaling_runs/mp-wide-20k", 20000),
    ("mp-wide-small", "bench/results/scaling_runs/mp-wide-small", 77769),
    ("unimat-mp-wide", "models/unimat-mp-wide", 77769),
)
VAL_DATA = "/work/data/mp20_val.h5"
TEST_DATA = "/work/data/mp20_test.h5"


def val_curve(log: Path) -> list[tuple[int, float]]:
    """(step, EMA validation loss) pairs of a trainer log; the last value wins when a step repeats.

    A warm-restarted run logs its own steps from 0 and, where the log was joined across runs, the
    ``cumulative_step`` since the first run: that one counts.
    """
    points: dict[int, float] = {}
    for line in log.read_text().splitlines():
        record = json.loads(line)
        if "val_loss" in record:
            points[int(record.get("cumulative_step", record["step"]))] = float(record["val_loss"])
    return sorted(points.items())


def unconditioned_val_loss(model_path: Path, *, val_data: str, draws: int) -> float:
    """Mean denoising loss over ``val_data`` with no space-group condition, noise from fixed seeds."""
    import torch

    from ase_unimat.generation import load_model
    from ase_unimat.training.dataset import UniMatDataset

    model = load_model(model_path, device="cpu")
    data = UniMatDataset(val_data)
    batch = data.batch(list(range(len(data))))
    batch.pop("spacegroup", None)
    losses = []
    with torch.inference_mode():
        for draw in range(draws):
            generator = torch.Generator().manual_seed(draw)
            loss, _ = model.loss(batch, generator=generator)
            losses.append(float(loss))
    return sum(losses) / len(losses)


def parameters(model_path: Path) -> int:
    """Number of network parameters in an export (its EMA weights)."""
    from ase_unimat.model.checkpoint import load_weights

    _, weights = load_weights(model_path)
    return int(sum(value.numel() for value in weights.values() if value.is_floating_point()))


def csp_scores(model_path: Path, *, test_data: str, rows: int, samples: int) -> dict:
    """CSP match at 1 and at ``samples`` on ``rows`` test structures drawn with numpy seed 0, unconditioned."""
    import numpy as np

    from ase_unimat.core.geometry import atom_counts
    from ase_unimat.data.hdf5 import read_atoms
    from ase_unimat.evaluation.csp import csp_match
    from ase_unimat.generation import generate, load_model

    references = read_atoms(test_data)
    picked = np.sort(np.random.default_rng(0).choice(len(references), size=min(rows, len(references)), replace=False))
    model = load_model(model_path, device="cpu")
    predictions = []
    for row in picked:
        seeds = [1000 * int(row) + j for j in range(samples)]
        predictions.append(generate(atom_counts(references[row]), seeds=seeds, model=model, spacegroup=None,
                                    device="cpu"))
    scores = csp_match(predictions, [references[row] for row in picked], k=samples)
    return {"rows": len(picked), "samples": samples, "match_at_1": scores["match_rate_at_1"],
            "match_at_k": scores["match_rate_at_k"], "rmse_at_1": scores["rmse_at_1"]}


def run(*, quick: bool, out_dir: Path) -> dict:
    import torch

    torch.set_num_threads(2)
    draws, csp_rows, csp_samples = (2, 10, 2) if quick else (8, 100, 8)
    rows = []
    for name, folder, structures in RUNS:
        log, export = ROOT / folder / "train_log.jsonl", ROOT / folder / "model.pt"
        if not log.is_file() or not export.is_file():
            continue
        curve = val_curve(log)
        step = int(torch.load(export, weights_only=True, map_location="cpu").get("step", curve[-1][0]))
        rows.append({"run": name, "structures": structures, "parameters_M": round(parameters(export) / 1e6, 2),
                     "export_step": step, "val_curve": curve, "best_logged": min(v for _, v in curve),
                     "unconditioned_val_loss": unconditioned_val_loss(export, val_data=VAL_DATA, draws=draws),
                     "csp": csp_scores(export, test_data=TEST_DATA, rows=csp_rows, samples=csp_samples)})
    result = {"val_data": VAL_DATA, "test_data": TEST_DATA, "noise_draws": draws, "runs": rows}
    _plot(rows, out_dir / ("scaling_quick.png" if quick else "scaling.png"))
    (out_dir / ("scaling_quick.md" if quick else "scaling.md")).write_text(_markdown(result))
    return result


def _markdown(result: dict) -> str:
    lines = ["# Scaling: validation loss against data size and model size", "",
             "`python -m bench scaling` (validation: mp_20/val, 123 structures). Unconditioned loss: the",
             f"export's loss with no space-group condition, {result['noise_draws']} fixed noise draws per structure.", "",
             "CSP: held-out mp_20/test rows, no space-group condition, match at 1 and at k samples.", "",
             "| run | structures | parameters | export step | best logged val loss | unconditioned val loss "
             "| CSP match@1 | CSP match@k |",
             "|---|---|---|---|---|---|---|---|"]
    for r in result["runs"]:
        csp = r.get("csp")
        cells = (f"{100 * csp['match_at_1']:.1f} % | {100 * csp['match_at_k']:.1f} % (k = {csp['samples']}, "
                 f"{csp['rows']} rows)") if csp else " | "
        lines.append(f"| {r['run']} | {r['structures']:,} | {r['parameters_M']}M | {r['export_step']:,} | "
                     f"{r['best_logged']:.3f} | {r['unconditioned_val_loss']:.3f} | {cells} |")
    lines += ["", "Equal-step comparison (logged EMA val loss):", "", "| step | " +
              " | ".join(r["run"] for r in result["runs"]) + " |", "|---|" + "---|" * len(result["runs"])]
    steps = sorted({s for r in result["runs"] for s, _ in r["val_curve"]})
    for step in steps:
        values = [dict(r["val_curve"]).get(step) for r in result["runs"]]
        lines.append(f"| {step:,} | " + " | ".join("" if v is None else f"{v:.3f}" for v in values) + " |")
    return "\n".join(lines) + "\n"


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (curves, loss, csp) = plt.subplots(1, 3, figsize=(15, 4))
    for r in rows:
        steps, values = zip(*r["val_curve"], strict=True)
        curves.plot(steps, values, marker="o", ms=3, label=f"{r['run']} ({r['structures']:,} structures, {r['parameters_M']}M)")
    curves.set_xlabel("training step (batch 64)")
    curves.set_ylabel("EMA validation loss (mp_20/val)")
    curves.set_ylim(0.6, 1.6)
    curves.legend(fontsize=7)
    for size in sorted({round(r["parameters_M"], 1) for r in rows}):  # 0.37M and 0.40M (+ space group): one size
        same = sorted((r for r in rows if round(r["parameters_M"], 1) == size), key=lambda r: r["structures"])
        x = [r["structures"] for r in same]
        label = f"~{size}M parameters"
        loss.plot(x, [r["unconditioned_val_loss"] for r in same], marker="o", label=label)
        with_csp = [r for r in same if r.get("csp")]
        csp.plot([r["structures"] for r in with_csp], [100 * r["csp"]["match_at_k"] for r in with_csp], marker="o",
                 label=f"{label}, match@k")
        csp.plot([r["structures"] for r in with_csp], [100 * r["csp"]["match_at_1"] for r in with_csp], marker="s",
                 ls="--", label=f"{label}, match@1")
    for ax in (loss, csp):
        ax.set_xscale("log")
        ax.set_xlabel("training structures")
        ax.legend(fontsize=7)
    loss.set_ylabel("unconditioned val loss of the export")
    csp.set_ylabel("CSP match on mp_20/test (%), no space group")
    for ax in (curves, loss, csp):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
