"""The model-quality benchmark's report: the markdown table (``model_quality.md``) and the E_hull histogram.

It owns :func:`summary_markdown` (the headline numbers with the settings behind them and the notes
on what they describe) and :func:`plot_e_hull` (``model_quality.png``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any


def _pct(value: Any) -> str:
    return "-" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{100 * value:.1f} %"


def _num(value: Any, digits: int = 3) -> str:
    return "-" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{value:.{digits}f}"


def summary_markdown(result: dict[str, Any]) -> str:
    """A short markdown table of the headline numbers and the settings behind them."""
    model, csp, gen, st, s = result["model"], result["csp"], result["generation"], result["stability"], result["settings"]
    k = csp.get("k", s["k"])
    notes = [f"Generative metrics: {gen['note']}."]
    rows = [
        ("CSP match@1 / RMSE@1", f"{_pct(csp['match_rate_at_1'])} / {_num(csp['rmse_at_1'])}", f"n = {csp['n']}"),
        (f"CSP match@{k} / RMSE@{k}", f"{_pct(csp.get(f'match_rate_at_{k}'))} / {_num(csp.get(f'rmse_at_{k}'))}",
         f"n = {csp.get('n_topk', 0)}"),
        ("structure / composition validity", f"{_pct(gen['struct_valid'])} / {_pct(gen['comp_valid'])}",
         "compositions given (CSP)"),
        ("COV-R / COV-P", f"{_pct(gen['cov_recall'])} / {_pct(gen['cov_precision'])}",
         f"cutoffs {gen['struct_cutoff']} / {gen['comp_cutoff']}, {gen['n_reference']} references"),
        ("W(density) / W(#elements)", f"{_num(gen['wdist_density'])} / {_num(gen['wdist_num_elems'])}", ""),
    ]  # fmt: skip
    if "e_hull" in st:
        q = st["e_hull_quartiles"] or [math.nan, math.nan]
        rows += [
            ("E_hull median [Q1, Q3] (eV/atom)", f"{_num(st['e_hull_median'])} [{_num(q[0])}, {_num(q[1])}]",
             f"{st['n_relaxed']} of {st['n']} relaxed ({st['relax']['calculator']})"),
            ("E_hull <= 0 / <= 0.1", f"{_pct(st['frac_e_hull_le_0'])} / {_pct(st['frac_e_hull_le_0.1'])}", ""),
            ("unique / novel / S.U.N.", f"{_pct(st['uniqueness'])} / {_pct(st['novelty'])} / {_pct(st['sun_rate'])}",
             f"novelty vs {st['novelty_reference']}"),
        ]  # fmt: skip
        undefined = st["hull_undefined"]
        notes.append(f"Stability: {undefined['samples_passed_over']} candidates passed over for containing an element "
                     f"without elemental reference ({', '.join(undefined['unreferenced_elements']) or 'none'}: "
                     f"{_pct(undefined['share_of_all_samples'])} of all samples). Hulls hold only the data's phases "
                     "(mp_20 train + extra MP, not the test structures), so E_hull < 0 is common and the "
                     "'<= 0' share overstates stability against the full Materials Project.")  # fmt: skip
    lines = [
        f"# Model quality: {model['name']} (step {model['step']}) on mp_20/test",
        "",
        f"Sampler {s['sampler']}, {s['steps']} steps, guidance {s['guidance']}, corrector {s['corrector_steps']}; "
        f"seed {s['seed']}; torch threads {s['torch_threads']}. Wall time per part (s): "
        + ", ".join(f"{k} {v}" for k, v in result["wall_s"].items()) + ".",
        "",
        "| metric | value | note |",
        "|---|---|---|",
        *[f"| {a} | {b} | {c} |" for a, b, c in rows],
        "",
        *[f"- {note}" for note in notes],
        "",
    ]  # fmt: skip
    return "\n".join(lines)


def plot_e_hull(stability: dict[str, Any], path: Path, *, title: str) -> None:
    """Histogram of the relaxed samples' energies above hull."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = [x for x in stability["e_hull"] if x is not None]
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
    ax.hist(values, bins=20, color="tab:blue", edgecolor="white")
    ax.axvline(0.0, color="k", lw=0.8)
    ax.axvline(stability["stable_threshold"], color="tab:red", lw=0.8, ls="--", label="S.U.N. threshold")
    ax.set_xlabel("E above hull (eV/atom)")
    ax.set_ylabel("samples")
    ax.set_title(f"{title}: {len(values)} relaxed samples", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
