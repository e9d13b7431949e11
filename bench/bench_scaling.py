"""Scaling on our data (the paper's RQ2): validation loss against data size and model size.

Run:  python -m bench scaling [--quick]     (bench/results/scaling.{json,png,md})

Runs compared, each an atom network trained with the same diffusion and optimiser settings
(batch 64, AdamW 1e-3, cosine, EMA 0.999) and validated on the 123 ``mp_20/val`` structures:

| run | data | parameters | log |
|---|---|---|---|
| unimat-mp20 | 6,045 (mp_20/train + extra_mp) | 0.37M | models/unimat-mp20/train_log.jsonl |
| unimat-mp20-wide | 6,045 | 1.9M | models/unimat-mp20-wide/train_log.jsonl |
| unimat-mp-wide | 77,771 (+ mp_all) | 1.9M + space-group condition | models/unimat-mp-wide/train_log.jsonl |

Two measures:

* the EMA validation loss the trainer logged every 1,000 steps (curves against steps). The
  space-group model's logged loss has its condition present on 90 % of the structures (dropped on
  10 %, as in training), which lowers it a little against the others;
* for each exported ``model.pt``, the validation loss with the condition *absent* for every
  structure (``spacegroup`` not given: what an unconditioned model sees), at fixed noise seeds (8
  draws per structure), so the three exports compare like for like -- at their own final steps,
  which differ (the table says which).

Not here yet: a 20k-structure point and the 0.37M network on the 78k set (each is a training run
of hours on these 2 cores; see the model card of unimat-mp-wide), and CSP match against data
size (too slow on CPU for 1.9M-parameter models while one trains: see bench/results/sampling.json).
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = (  # name, structures, parameters (millions)
    ("unimat-mp20", 6045, 0.37),
    ("unimat-mp20-wide", 6045, 1.9),
    ("unimat-mp-wide", 77771, 1.9),
)
VAL_DATA = "/work/data/mp20_val.h5"


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


def run(*, quick: bool, out_dir: Path) -> dict:
    import torch

    torch.set_num_threads(2)
    draws = 2 if quick else 8
    rows = []
    for name, structures, params in RUNS:
        folder = ROOT / "models" / name
        log, export = folder / "train_log.jsonl", folder / "model.pt"
        if not log.is_file() or not export.is_file():
            continue
        curve = val_curve(log)
        step = int(torch.load(export, weights_only=True, map_location="cpu").get("step", curve[-1][0]))
        rows.append({"run": name, "structures": structures, "parameters_M": params, "export_step": step,
                     "val_curve": curve, "best_logged": min(v for _, v in curve),
                     "unconditioned_val_loss": unconditioned_val_loss(export, val_data=VAL_DATA, draws=draws)})
    result = {"val_data": VAL_DATA, "noise_draws": draws, "runs": rows}
    _plot(rows, out_dir / ("scaling_quick.png" if quick else "scaling.png"))
    (out_dir / ("scaling_quick.md" if quick else "scaling.md")).write_text(_markdown(result))
    return result


def _markdown(result: dict) -> str:
    lines = ["# Scaling: validation loss against data size and model size", "",
             "`python -m bench scaling` (validation: mp_20/val, 123 structures). Unconditioned loss: the",
             f"export's loss with no space-group condition, {result['noise_draws']} fixed noise draws per structure.", "",
             "| run | structures | parameters | export step | best logged val loss | unconditioned val loss |",
             "|---|---|---|---|---|---|"]
    for r in result["runs"]:
        lines.append(f"| {r['run']} | {r['structures']:,} | {r['parameters_M']}M | {r['export_step']:,} | "
                     f"{r['best_logged']:.3f} | {r['unconditioned_val_loss']:.3f} |")
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

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in rows:
        steps, values = zip(*r["val_curve"], strict=True)
        ax.plot(steps, values, marker="o", ms=3, label=f"{r['run']} ({r['structures']:,} structures, {r['parameters_M']}M)")
    ax.set_xlabel("training step (batch 64)")
    ax.set_ylabel("EMA validation loss (mp_20/val)")
    ax.set_ylim(0.6, 1.6)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
