"""Pool search-efficiency runs into one table per size bin, and check issue 7's targets on it.

One run has four targets per bin, and a bin's ratio moves about 1.5x from one draw of four targets
to another. Pooling runs on disjoint draws (``--selection-seed``) gives a bin more targets. A
variant run (``--unimat-option``) that ran only some sources can replace those sources' numbers
for the targets it covers:

    python -m bench.search_efficiency_pool bench/results/search_efficiency.json \\
        bench/results/search_efficiency_tuning.json --stem search_efficiency_pooled
    python -m bench.search_efficiency_pool A.json B.json --variant A_sym.json --variant B_x.json:unimat-template --stem X

All runs must share the run seed, calculator and relaxation settings; the seed count may differ
(seed ``k`` of a source is the same in every run, and each source's 1/p uses its own count, so a
variant run with more random seeds sharpens random's 1/p, which 10 seeds without a hit censor at
22). A target drawn by two base runs counts once. Per bin the pooled numbers use the rules of :mod:`bench.search_efficiency`
(geometric mean of 1/p over targets; steps per seed averaged over targets). Issue 7's targets, per
UniMat source, are checked on the targets where both compared sources ran (a target where neither
hit counts as a ratio of 1):

- 7-12 and 13-20 atoms: 1/p at most 1/5 of random's, optimizer steps per seed at most half of
  random's, 1/p no more than template's;
- 1-6 atoms: 1/p no more than random's.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click
import numpy as np

from bench._search_efficiency_config import RESULTS_DIR, SOURCE_ORDER
from bench._search_efficiency_scoring import geometric_mean, summarise

SHARED_SETTINGS = ("run_seed", "calculator", "fmax", "max_steps", "time_limit")
UNIMAT_SOURCES = ("unimat", "unimat-template", "unimat-sym")
LARGE_BINS = ("7-12", "13-20")


class PoolError(ValueError):
    """The runs cannot be pooled (different settings, a variant target no base run has)."""


def _config(run: Mapping[str, Any]) -> dict[str, Any]:
    return dict(run["result"]["config"] if "result" in run else run["config"])


def _result(run: Mapping[str, Any]) -> Mapping[str, Any]:
    return run["result"] if "result" in run else run


def pool(base: Sequence[tuple[str, Mapping[str, Any]]], variants: Sequence[tuple] = ()) -> dict[str, Any]:
    """Merge the per-target results of ``base`` runs, then let ``variants`` replace their sources.

    Parameters
    ----------
    base, variants
        ``(name, run)`` pairs; a run is a search-efficiency JSON record (or its ``result``). A variant
        may be ``(name, run, sources)`` to take only those sources from it.

    Returns
    -------
    dict with ``per_target``, ``bins`` (as in a run), ``sources``, ``runs`` and ``notes``.
    """
    if not base:
        raise PoolError("no base run to pool")
    first_name, first = base[0]
    settings = {key: _config(first).get(key) for key in SHARED_SETTINGS}
    for name, run, *_ in [*base[1:], *variants]:
        other = {key: _config(run).get(key) for key in SHARED_SETTINGS}
        if other != settings:
            differ = ", ".join(f"{k}: {settings[k]} vs {other[k]}" for k in SHARED_SETTINGS if settings[k] != other[k])
            raise PoolError(f"{name} was run with other settings than {first_name} ({differ})")
    rows: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    for name, run in base:
        for row in _result(run)["per_target"]:
            if row["material_id"] in rows:
                notes.append(f"{row['formula']} ({row['material_id']}) is in more than one base run; counted once")
                continue
            rows[row["material_id"]] = {**row, "sources": dict(row["sources"]), "from": name}
    for name, run, *only in variants:
        chosen = list(only[0]) if only and only[0] else list(_result(run)["sources"])
        for row in _result(run)["per_target"]:
            if row["material_id"] not in rows:
                raise PoolError(f"{name}: target {row['formula']} ({row['material_id']}) is in no base run")
            missing = [s for s in chosen if s not in row["sources"]]
            if missing:
                raise PoolError(f"{name} has no {', '.join(missing)} results for {row['formula']}")
            rows[row["material_id"]]["sources"].update({s: row["sources"][s] for s in chosen})
        notes.append(f"{name} replaces {', '.join(chosen)} on its {len(_result(run)['per_target'])} targets")
    per_target = list(rows.values())
    present = {source for row in per_target for source in row["sources"]}
    sources = [s for s in SOURCE_ORDER if s in present]
    bins = [b for b in ("1-6", *LARGE_BINS) if any(row["bin"] == b for row in per_target)]
    return {"runs": [name for name, _ in base], "variants": [v[0] for v in variants], "settings": settings,
            "notes": notes, "sources": sources, "per_target": per_target,
            "bins": summarise(per_target, sources, bins)}  # fmt: skip


def paired(per_target: Sequence[Mapping[str, Any]], bin_name: str, a: str, b: str) -> dict[str, float] | None:
    """Geometric-mean 1/p ratio and mean-steps ratio of sources ``a`` and ``b`` on the targets both ran."""
    rows = [t["sources"] for t in per_target if t["bin"] == bin_name and a in t["sources"] and b in t["sources"]]
    if not rows:
        return None
    return {
        "targets": len(rows),
        "neither_hit": sum(r[a]["hits"] == 0 and r[b]["hits"] == 0 for r in rows),
        "relaxations_ratio": geometric_mean([_ratio(r[a], r[b]) for r in rows]),
        "steps_ratio": float(np.mean([r[a]["steps_per_seed"] for r in rows]) /
                             np.mean([r[b]["steps_per_seed"] for r in rows])),
    }  # fmt: skip


def _ratio(a: Mapping[str, Any], b: Mapping[str, Any]) -> float:
    """1/p of ``a`` over 1/p of ``b``; 1 when neither hit (both censored: no evidence either way, whatever
    the seed counts, which alone would set the ratio of two censored values)."""
    if a["hits"] == 0 and b["hits"] == 0:
        return 1.0
    return a["expected_relaxations"] / b["expected_relaxations"]


def issue7_targets(per_target: Sequence[Mapping[str, Any]], source: str) -> list[dict[str, Any]]:
    """Each of issue 7's criteria for UniMat ``source``: the measured value, the bound and whether it holds."""
    checks = []

    def check(bin_name: str, what: str, value: float | None, bound: float, pair: Mapping[str, Any]) -> None:
        checks.append({"bin": bin_name, "criterion": what, "value": value, "bound": bound, "targets": pair["targets"],
                       "neither_hit": pair["neither_hit"], "met": value is not None and value <= bound})  # fmt: skip

    for bin_name in LARGE_BINS:
        vs_random, vs_template = paired(per_target, bin_name, source, "random"), paired(per_target, bin_name, source,
                                                                                        "template")  # fmt: skip
        if vs_random:
            check(bin_name, "1/p vs random", vs_random["relaxations_ratio"], 0.2, vs_random)
            check(bin_name, "steps/seed vs random", vs_random["steps_ratio"], 0.5, vs_random)
        if vs_template:
            check(bin_name, "1/p vs template", vs_template["relaxations_ratio"], 1.0, vs_template)
    small = paired(per_target, "1-6", source, "random")
    if small:
        check("1-6", "1/p vs random", small["relaxations_ratio"], 1.0, small)
    return checks


#: Issue 13's targets: (source, bins, criterion, other source or None for an absolute 1/p, bound).
ISSUE13_CRITERIA = (
    ("unimat", LARGE_BINS, "1/p vs random", "random", 0.33),
    ("unimat", LARGE_BINS, "1/p vs random-sym", "random-sym", 1.0),
    ("unimat", LARGE_BINS, "steps/seed vs random", "random", 0.5),
    ("unimat", ("1-6",), "1/p vs random", "random", 1.0),
    ("unimat-template", LARGE_BINS, "1/p vs template", "template", 0.7),
    ("unimat-template", ("7-12",), "1/p", None, 1.8),
    # unimat-sym (from noise inside the templates' symmetry) against the from-noise and the template criteria
    ("unimat-sym", LARGE_BINS, "1/p vs random", "random", 0.33),
    ("unimat-sym", LARGE_BINS, "1/p vs random-sym", "random-sym", 1.0),
    ("unimat-sym", LARGE_BINS, "steps/seed vs random", "random", 0.5),
    ("unimat-sym", ("1-6",), "1/p vs random", "random", 1.0),
    ("unimat-sym", LARGE_BINS, "1/p vs template", "template", 0.7),
)


def issue13_targets(per_target: Sequence[Mapping[str, Any]], source: str) -> list[dict[str, Any]]:
    """Each of issue 13's criteria for UniMat ``source`` (:data:`ISSUE13_CRITERIA`), as :func:`issue7_targets`.

    Ratios are paired over the targets both sources ran; the absolute criterion is the geometric
    mean of the source's own 1/p over its targets in the bin.
    """
    checks = []
    for name, bins, what, other, bound in ISSUE13_CRITERIA:
        if name != source:
            continue
        for bin_name in bins:
            if other is None:
                rows = [t["sources"][source] for t in per_target if t["bin"] == bin_name and source in t["sources"]]
                if not rows:
                    continue
                value = geometric_mean([r["expected_relaxations"] for r in rows])
                pair = {"targets": len(rows), "neither_hit": sum(r["hits"] == 0 for r in rows)}
            else:
                pair = paired(per_target, bin_name, source, other)
                if not pair:
                    continue
                value = pair["steps_ratio"] if what.startswith("steps") else pair["relaxations_ratio"]
            checks.append({"bin": bin_name, "criterion": what, "value": value, "bound": bound,
                           "targets": pair["targets"], "neither_hit": pair["neither_hit"], "met": value <= bound})
    return checks


def markdown(pooled: Mapping[str, Any], checks: Mapping[str, Sequence[Mapping[str, Any]]],
             issue13: Mapping[str, Sequence[Mapping[str, Any]]] | None = None) -> str:
    """The pooled per-bin table, the runs it came from and the issue-7 checks."""
    lines = ["# Search efficiency, pooled runs", "", "Runs: " + ", ".join(pooled["runs"])]
    if pooled["variants"]:
        lines.append("Variants: " + ", ".join(pooled["variants"]))
    lines += [f"- {note}" for note in pooled["notes"]]
    lines += ["", "| bin | source | targets | hits / seeds | targets hit | 1/p (geomean) | steps/seed |",
              "|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, data in pooled["bins"].items():
        for source, s in data["sources"].items():
            lines.append(f"| {name} | {source} | {s['targets']} | {s['hits']} / {s['seeds']} | {s['targets_hit']} | "
                         f"{s['expected_relaxations_geomean']:.2f} | {s['steps_per_seed']:.0f} |")  # fmt: skip
    lines += ["", "Issue 7's targets (paired over the targets where both sources ran; met when value <= bound):", "",
              "| source | bin | criterion | targets | neither hit | value | bound | met |",
              "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for source, rows in checks.items():
        for c in rows:
            value = "n/a" if c["value"] is None else f"{c['value']:.2f}"
            lines.append(f"| {source} | {c['bin']} | {c['criterion']} | {c['targets']} | {c['neither_hit']} | {value} | "
                         f"{c['bound']:g} | "
                         f"{'yes' if c['met'] else 'no'} |")  # fmt: skip
    if issue13:
        lines += ["", "Issue 13's targets (as above):", "",
                  "| source | bin | criterion | targets | neither hit | value | bound | met |",
                  "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for source, rows in issue13.items():
            for c in rows:
                lines.append(f"| {source} | {c['bin']} | {c['criterion']} | {c['targets']} | {c['neither_hit']} | "
                             f"{c['value']:.2f} | {c['bound']:g} | {'yes' if c['met'] else 'no'} |")
    lines += ["", "Targets:", ""]
    for t in pooled["per_target"]:
        lines.append(f"- {t['bin']}: {t['formula']} ({t['material_id']}, {t['natoms']} atoms) from {t['from']}")
    return "\n".join(lines) + "\n"


def _load(path: Path) -> tuple[str, dict[str, Any]]:
    try:
        return path.name, json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise PoolError(f"cannot read {path}: {err}") from None


def _load_variant(spec: str) -> tuple[str, dict[str, Any], tuple[str, ...]]:
    """``path.json`` or ``path.json:source,source`` (only those sources of the variant run)."""
    head, sep, names = spec.rpartition(".json:")
    path, names = (head + ".json", names) if sep else (spec, "")
    chosen = tuple(n.strip() for n in names.split(",") if n.strip())
    unknown = [n for n in chosen if n not in SOURCE_ORDER]
    if unknown:
        raise PoolError(f"--variant {spec}: unknown source(s) {', '.join(unknown)}; choose from {', '.join(SOURCE_ORDER)}")
    name, run = _load(Path(path))
    return (name + (f" ({', '.join(chosen)})" if chosen else ""), run, chosen)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("runs", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--variant", "variants", multiple=True, metavar="RUN.json[:SOURCE,...]",
              help="A variant run whose sources (all, or those named after a colon) replace the base runs' on "
                   "its targets (repeatable).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=RESULTS_DIR, show_default=True,
              help="Folder for <stem>.json and <stem>.md.")
@click.option("--stem", default="search_efficiency_pooled", show_default=True, help="Output file name.")
def main(runs: tuple[Path, ...], variants: tuple[str, ...], out: Path, stem: str) -> None:
    """Pool search-efficiency RUNS (their JSON files) and check issue 7's targets on the pool."""
    try:
        pooled = pool([_load(p) for p in runs], [_load_variant(v) for v in variants])
    except PoolError as err:
        raise click.ClickException(str(err)) from None
    checks = {s: issue7_targets(pooled["per_target"], s) for s in UNIMAT_SOURCES if s in pooled["sources"]}
    issue13 = {s: issue13_targets(pooled["per_target"], s) for s in UNIMAT_SOURCES if s in pooled["sources"]}
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps({**pooled, "issue7_targets": checks, "issue13_targets": issue13},
                                                 indent=1) + "\n")
    text = markdown(pooled, checks, issue13)
    (out / f"{stem}.md").write_text(text)
    click.echo(text)


if __name__ == "__main__":
    main()
