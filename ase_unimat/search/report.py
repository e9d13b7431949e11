"""Report pictures of a search's run directory (matplotlib, Agg backend; PNG files).

- ``convergence.png``: for each seed source, the best enthalpy per formula unit found after its
  first *m* relaxations (seeds in index order), relative to the best of the whole run. The source
  whose curve drops first needs fewest relaxations: the comparison the product is about.
- ``enthalpy_volume.png``: enthalpy per formula unit against volume per formula unit of every
  successful relaxation, coloured by seed source.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ase_unimat.core.formula import reduce_counts
from ase_unimat.search.store import RunStore


def _points(run_dir: Path) -> list[dict[str, Any]]:
    """(index, source, enthalpy/fu, volume/fu) of every successful record in the run directory."""
    points = []
    for record in RunStore(run_dir).records():
        if record["status"] != "ok" or record["enthalpy"] is None:
            continue
        counts: dict[int, int] = {}
        for z in record["atoms"]["numbers"]:
            counts[z] = counts.get(z, 0) + 1
        n_fu = reduce_counts({str(z): c for z, c in counts.items()})[1]
        points.append(
            {
                "index": int(record["seed_info"].get("index", 0)),
                "source": record["source"],
                "enthalpy_per_fu": record["enthalpy"] / n_fu,
                "volume_per_fu": record["volume"] / n_fu,
            }
        )
    return points


def best_so_far(points: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Source -> running minimum of enthalpy per formula unit over that source's seeds in index order."""
    curves: dict[str, list[float]] = {}
    for point in sorted(points, key=lambda p: p["index"]):
        curve = curves.setdefault(point["source"], [])
        curve.append(min(curve[-1], point["enthalpy_per_fu"]) if curve else point["enthalpy_per_fu"])
    return curves


def make_report(run_dir: str | Path, *, out: str | Path | None = None) -> list[Path]:
    """Draw the report PNGs of ``run_dir`` into ``out`` (default ``run_dir/report``); returns their paths.

    Raises
    ------
    ValueError
        If the run directory holds no successful relaxation.
    """
    import matplotlib  # optional: pip install '.[plot]'

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # optional: pip install '.[plot]'

    run_dir = Path(run_dir)
    if not (run_dir / "manifest.json").is_file():
        raise ValueError(f"{run_dir} is not a unimat-airss run directory (no manifest.json)")
    points = _points(run_dir)
    if not points:
        raise ValueError(f"no successful relaxations in {run_dir} to draw")
    folder = Path(out) if out is not None else run_dir / "report"
    folder.mkdir(parents=True, exist_ok=True)
    best = min(p["enthalpy_per_fu"] for p in points)
    sources = sorted({p["source"] for p in points})
    colours = {s: plt.get_cmap("tab10")(i % 10) for i, s in enumerate(sources)}

    fig, ax = plt.subplots(figsize=(6, 4))
    for source, curve in best_so_far(points).items():
        ax.step(range(1, len(curve) + 1), [h - best for h in curve], where="post", label=source, color=colours[source])
    ax.set_xlabel("relaxations of this source")
    ax.set_ylabel("best enthalpy per f.u. − run best (eV)")
    ax.set_yscale("symlog", linthresh=1e-3)
    convergence = _finish(fig, ax, f"{run_dir.name}: convergence per seed source", folder / "convergence.png")

    fig, ax = plt.subplots(figsize=(6, 4))
    for source in sources:
        chosen = [p for p in points if p["source"] == source and math.isfinite(p["enthalpy_per_fu"])]
        ax.scatter(
            [p["volume_per_fu"] for p in chosen],
            [p["enthalpy_per_fu"] - best for p in chosen],
            s=14,
            alpha=0.7,
            label=source,
            color=colours[source],
        )
    ax.set_xlabel("volume per f.u. (Å³)")
    ax.set_ylabel("enthalpy per f.u. − run best (eV)")
    scatter = _finish(fig, ax, f"{run_dir.name}: enthalpy vs volume", folder / "enthalpy_volume.png")
    return [convergence, scatter]


def _finish(fig, ax, title: str, path: Path) -> Path:
    """Legend, title and layout of one report figure; save it to ``path`` and close it."""
    import matplotlib.pyplot as plt  # optional: pip install '.[plot]'

    ax.legend(title="seed source")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
