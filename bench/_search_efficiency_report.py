"""The search-efficiency benchmark's report: the PNG of relaxations to a hit and the one-page markdown."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench._search_efficiency_config import DEFAULT, ENERGY_TOLERANCE


def plot(per_target: Sequence[Mapping[str, Any]], sources: Sequence[str], bins: Sequence[str], path: Path) -> None:
    """Median best energy above the reference, and share of targets hit, against relaxations."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(bins), figsize=(max(4.2 * len(bins), 7.0), 6.4), squeeze=False, sharex="col")
    colors = {"unimat": "tab:red", "unimat-template": "tab:orange", "unimat-sym": "tab:brown", "random": "tab:blue",
              "template": "tab:green", "mixed": "tab:purple"}  # fmt: skip
    markers = {"unimat": "o", "unimat-template": "v", "unimat-sym": "P", "random": "s", "template": "^", "mixed": "D"}
    for col, name in enumerate(bins):
        rows = [t for t in per_target if t["bin"] == name]
        n_max = 1
        for i, source in enumerate(sources):
            curves = [t["sources"][source] for t in rows if source in t["sources"]]
            if not curves:
                continue
            best = np.array([c["best_mev_above_ref"] for c in curves], dtype=float)  # (T, N), inf: none finished
            k = np.arange(1, best.shape[1] + 1)
            n_max = max(n_max, len(k))
            median = np.median(best, axis=0)  # (N,)
            median = np.where(np.isfinite(median), median, np.nan)
            shift = 0.05 * (i - (len(sources) - 1) / 2)  # keep overlapping lines apart
            style = {"color": colors.get(source), "label": source}
            axes[0, col].plot(k + shift, median, marker=markers.get(source, "o"), ms=4, **style)
            first = np.array([c["first_hit"] or math.inf for c in curves])
            axes[1, col].step(k + shift, [(first <= j).mean() for j in k], where="post", **style)
        axes[0, col].set_yscale("symlog", linthresh=1.0)
        axes[0, col].axhline(ENERGY_TOLERANCE * 1000, color="grey", lw=0.8, ls="--")
        axes[0, col].axhline(0.0, color="grey", lw=0.5)
        axes[0, col].set_title(f"{name} atoms ({len(rows)} targets)")
        axes[1, col].set_xlabel("relaxations")
        axes[1, col].set_xticks(np.arange(1, n_max + 1, max(1, n_max // 10)))
        axes[1, col].set_ylim(-0.02, 1.02)
    axes[0, 0].set_ylabel("median best E - E_ref (meV/atom)\n(dashed: hit tolerance; gap: none finished)")
    axes[1, 0].set_ylabel("share of targets hit")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("Search efficiency on held-out mp_20 test compositions (CHGNet)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(result: Mapping[str, Any], png_name: str) -> str:
    """A short summary: the per-bin table, the ratios and the rules."""
    cfg = result["config"]
    lines = [
        f"# Search efficiency ({_run_kind(result)} run)",
        "",
        f"{cfg['per_bin']} held-out mp_20 test composition(s) per size bin, {cfg['n_seeds']} seeds per source, "
        f"relaxed with {cfg['calculator']} (FIRE + FrechetCellFilter, fmax {cfg['fmax']} eV/A, <= {cfg['max_steps']} "
        f"steps). Hit: matches the relaxed test structure or is within {ENERGY_TOLERANCE * 1000:.0f} meV/atom of its "
        f"energy. 1/p uses p = (hits + 0.5) / (N + 1); a target with no hit is censored (true value likely larger). "
        f"Wall time {result['wall_s']:.0f} s.",
        "",
        *_variant_lines(cfg, result.get("overlap_with_default_targets", [])),
        _cache_line(result["relaxations"]),
        "",
        "| bin | source | targets | hits / seeds | targets hit | 1/p (geomean) | steps/seed | s/seed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, data in result["bins"].items():
        for source, s in data["sources"].items():
            lines.append(
                f"| {name} | {source} | {s['targets']} | {s['hits']} / {s['seeds']} | {s['targets_hit']} | "
                f"{s['expected_relaxations_geomean']:.2f} | {s['steps_per_seed']:.0f} | {s['wall_s_per_seed']:.1f} |"
            )
    lines += [
        "",
        "Ratios of expected relaxations (geometric mean over targets; < 1: the first source needs fewer):",
        "",
    ]
    for name, data in result["bins"].items():
        text = ", ".join(f"{k} = {v['geomean']:.2f} ({v['targets']})" for k, v in data["ratios"].items()) or "none"
        lines.append(f"- {name}: {text}")
    lines += ["", "Sources:", ""]
    lines += [f"- {name}: {note}" for name, note in result["source_notes"].items()]
    lines += ["", "Targets:", ""]
    for t in result["targets"]:
        notes = f" ({'; '.join(t['notes'])})" if t["notes"] else ""
        lines.append(f"- {t['bin']}: {t['formula']} ({t['material_id']}, {t['natoms']} atoms){notes}")
    lines += ["", f"![best energy against relaxations]({png_name})", ""]
    return "\n".join(lines)


def _run_kind(result: Mapping[str, Any]) -> str:
    """``quick``, ``default``, or ``variant`` (another target draw or UniMat options)."""
    if result["quick"]:
        return "quick"
    return "variant" if _variant_lines(result["config"], []) else "default"


def _variant_lines(cfg: Mapping[str, Any], overlap: Sequence[str]) -> list[str]:
    """What sets a run apart from the default one: its target draw and UniMat options (none: no lines)."""
    lines = []
    if cfg.get("selection_seed", DEFAULT.selection_seed) != DEFAULT.selection_seed:
        shared = ", ".join(overlap) if overlap else "none"
        lines.append(f"Targets drawn with selection seed {cfg['selection_seed']} (default {DEFAULT.selection_seed}); "
                     f"shared with the default run's targets: {shared}.")  # fmt: skip
    if cfg.get("unimat_options"):
        options = ", ".join(f"{name}={value}" for name, value in cfg["unimat_options"])
        lines.append(f"UniMat source options (a variant): {options}.")
    if cfg.get("template_options"):
        options = ", ".join(f"{name}={value}" for name, value in cfg["template_options"])
        lines.append(f"Template options of the template and unimat-template sources (a variant): {options}.")
    if cfg.get("template_reference"):
        lines.append(f"Templates from {cfg['template_reference']} (a variant; default: the training set of the "
                     "default model).")  # fmt: skip
    return [*lines, ""] if lines else []


def _cache_line(relaxations: Mapping[str, Any]) -> str:
    if relaxations["cache_dir"] is None:
        return f"{relaxations['jobs']} relaxations, no cache."
    note = " (s/seed is the wall time of the run that relaxed them)" if relaxations["from_cache"] else ""
    return (
        f"{relaxations['jobs']} relaxations: {relaxations['from_cache']} read from the cache{note}, "
        f"{relaxations['relaxed']} relaxed in this run."
    )


# ---------------------------------------------------------------------------------------------- run
