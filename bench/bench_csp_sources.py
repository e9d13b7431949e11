"""CSP of the search's seed sources on every mp_20/test row: match@1, match@k and validity (issue 13).

Question: given a held-out composition, how often is one of the first ``k`` seeds of a source
already the known structure (before any relaxation)? This is the CSP protocol of CDVAE / DiffCSP
(StructureMatcher ``stol 0.5, ltol 0.3, angle_tol 10``, :func:`ase_unimat.evaluation.csp.csp_match`)
applied to the seeds ``unimat-airss`` would relax.

Protocol
- **Rows**: all 1,130 mp_20/test structures (``$UNIMAT_TEST_H5`` or the shared CSV); the
  composition is the row's cell counts (formula units of the known structure).
- **Seeds**: ``make_seed_sources(source, model=<default model>)``, ``make(counts, range(k),
  run_seed=row)``; seed 0 is the "@1" prediction. ``unimat`` samples from noise with the
  search's defaults (ancestral, space group drawn from the composition's templates) except
  ``steps`` (``UNIMAT_CSP_STEPS``, default 20, ``generate()``'s default; sessions 10 and 12 found
  50 and 200 steps no better) and ``min_distance`` (``UNIMAT_CSP_MIN_DISTANCE``, default the
  source's 0.5 A: a sample with closer atoms is drawn again, up to 3 times; ``none`` keeps every
  sample as drawn, which is what the validity of other CSP papers counts); ``template`` seeds are the prototype-substitution candidates in
  their prior order (the test compositions are in no template reference). A row a source cannot
  seed counts as no match.
- **Validity**: share of seeds with all atoms >= 0.5 A apart and a volume >= 0.1 A^3
  (:func:`ase_unimat.evaluation.validity.structure_validity`).

Sources ``UNIMAT_CSP_SOURCES`` (default ``unimat,template``), ``k`` ``UNIMAT_CSP_K`` (default 20),
worker processes ``UNIMAT_CSP_WORKERS`` (default 2, one torch thread each). To compare a model
with the default one: ``UNIMAT_CSP_MODEL`` (a model name or ``model.pt``; it also gives the
templates' space-group condition its reference when it has one) and ``UNIMAT_CSP_ROWS=N`` (N rows
drawn with ``numpy.random.default_rng(0)``, the same N rows for every model), with ``--out`` a
folder of its own so that the full run's ``csp_sources.json`` stays; a copy of the committed
``csp_sources_cache/<source>-<key>.jsonl`` in that folder's cache gives the default model's rows
without sampling them again. Every row's result
is appended to ``<out>/csp_sources_cache/<source>.jsonl`` as it finishes, so an interrupted run
resumes where it stopped (same settings; a changed setting starts a new cache file). The cache is
keyed by the settings, not by the code: after changing what a source makes, delete its file.

Run: ``python -m bench csp_sources`` (``bench/results/csp_sources.{json,md}``; ``--quick``: 24
rows, k = 4).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

QUICK_ROWS = 24


def settings(quick: bool) -> dict[str, Any]:
    """The run's settings from the environment (see the module docstring)."""
    return {
        "sources": [s for s in os.environ.get("UNIMAT_CSP_SOURCES", "unimat,template").split(",") if s],
        "k": 4 if quick else int(os.environ.get("UNIMAT_CSP_K", "20")),
        "steps": int(os.environ.get("UNIMAT_CSP_STEPS", "20")),
        "min_distance": os.environ.get("UNIMAT_CSP_MIN_DISTANCE", "0.5"),
        "rows": QUICK_ROWS if quick else None,
        "row_sample": int(os.environ["UNIMAT_CSP_ROWS"]) if os.environ.get("UNIMAT_CSP_ROWS") else None,
        "model": os.environ.get("UNIMAT_CSP_MODEL") or None,
        "workers": int(os.environ.get("UNIMAT_CSP_WORKERS", "2")),
    }


def select_rows(n_structures: int, config: dict[str, Any]) -> list[int]:
    """The test rows to seed: the first ``rows`` (quick), ``row_sample`` drawn with seed 0, or all."""
    if config.get("rows"):
        return list(range(n_structures))[: config["rows"]]
    if config.get("row_sample"):
        size = min(int(config["row_sample"]), n_structures)
        return sorted(np.random.default_rng(0).choice(n_structures, size, replace=False).tolist())
    return list(range(n_structures))


def _row_results(args: tuple[str, int, list[int], dict[str, Any]]) -> list[dict[str, Any]]:
    """Worker: seed and match the given test rows for one source."""
    import torch

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    from ase_unimat.evaluation.csp import csp_match
    from ase_unimat.evaluation.validity import structure_validity
    from ase_unimat.search.seed_registry import make_seed_sources
    from ase_unimat.search.seeds import NoSeedsForFormula
    from bench._model_quality_data import load_test_set

    source_name, _, rows, config = args
    structures, _ = load_test_set()
    options = {"steps": config["steps"], "min_distance": config["min_distance"]} if source_name.startswith("unimat") else None
    source = make_seed_sources(source_name, unimat_options=options, model=config.get("model"))
    out = []
    for row in rows:
        reference = structures[row]
        counts = {}
        for symbol in reference.get_chemical_symbols():
            counts[symbol] = counts.get(symbol, 0) + 1
        start = time.perf_counter()
        try:
            seeds = [s.atoms for s in source.make(counts, range(config["k"]), run_seed=row)]
        except NoSeedsForFormula as err:
            out.append({"row": row, "seeded": False, "why": str(err), "rms": [None] * config["k"], "valid": 0})
            continue
        rms = []
        for seed in seeds:
            match = csp_match([[seed]], [reference], k=1)
            value = match["rms"][0]
            rms.append(None if not np.isfinite(value) else float(value))
        out.append({"row": row, "seeded": True, "rms": rms, "valid": int(sum(structure_validity(s) for s in seeds)),
                    "natoms": len(reference), "seconds": time.perf_counter() - start})  # fmt: skip
    return out


def _cache_path(out_dir: Path, source: str, config: dict[str, Any]) -> Path:
    key = {"source": source, "k": config["k"], "steps": config["steps"]}
    if source.startswith("unimat"):  # the other sources do not depend on these
        key["min_distance"] = str(config["min_distance"]).lower()
    if config.get("model"):  # absent for the default model, so its caches keep their names (templates: its reference)
        key["model"] = str(config["model"])
    key = json.dumps(key, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    return out_dir / "csp_sources_cache" / f"{source}-{digest}.jsonl"


def _read_cache(path: Path) -> dict[int, dict[str, Any]]:
    done = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                item = json.loads(line)
            except json.JSONDecodeError:  # a line cut by a kill: that row runs again
                continue
            done[int(item["row"])] = item
    return done


def summarise(items: list[dict[str, Any]], k: int) -> dict[str, Any]:
    """Match@1, match@k (and at 1, 5, 10 where <= k), validity and seeding coverage of per-row results."""
    rms = np.array([[np.nan if v is None else v for v in item["rms"]] for item in items], dtype=float)  # (R, k)
    out = {"rows": len(items), "seeded": int(sum(item["seeded"] for item in items))}
    for j in sorted({1, 5, 10, k}):
        if j <= k:
            out[f"match_at_{j}"] = float(np.mean(np.isfinite(rms[:, :j]).any(1)))
    seeded = [item for item in items if item["seeded"]]
    out["validity"] = float(sum(item["valid"] for item in seeded) / max(1, k * len(seeded)))
    by_bin = {}
    for lo, hi in ((1, 6), (7, 12), (13, 20)):
        rows = [i for i, item in enumerate(items) if lo <= item.get("natoms", 0) <= hi]
        if rows:
            by_bin[f"{lo}-{hi}"] = {"rows": len(rows), "match_at_1": float(np.mean(np.isfinite(rms[rows, 0]))),
                                    f"match_at_{k}": float(np.mean(np.isfinite(rms[rows]).any(1)))}  # fmt: skip
    out["by_atoms"] = by_bin
    return out


def run(*, quick: bool = False, out_dir: Path | None = None) -> dict[str, Any]:
    """Seed every test row with each source and score the seeds (see the module docstring)."""
    from bench._model_quality_data import load_test_set

    config = settings(quick)
    out_dir = Path(out_dir or Path(__file__).parent / "results")
    structures, where = load_test_set()
    rows = select_rows(len(structures), config)
    result: dict[str, Any] = {"config": config, "test_set": where, "sources": {}}
    for source in config["sources"]:
        start = time.perf_counter()
        cache = _cache_path(out_dir, source, config)
        cache.parent.mkdir(parents=True, exist_ok=True)
        done = _read_cache(cache)
        todo = [r for r in rows if r not in done]
        chunks = [todo[i : i + 10] for i in range(0, len(todo), 10)]
        with ProcessPoolExecutor(max_workers=max(1, config["workers"])) as pool, cache.open("a") as log:
            for items in pool.map(_row_results, [(source, i, chunk, config) for i, chunk in enumerate(chunks)]):
                for item in items:
                    log.write(json.dumps(item) + "\n")
                    done[item["row"]] = item
                log.flush()
        items = [done[r] for r in rows]
        result["sources"][source] = {**summarise(items, config["k"]), "wall_s": time.perf_counter() - start,
                                     "cache": str(cache)}  # fmt: skip
    (out_dir / f"csp_sources{'_quick' if quick else ''}.md").write_text(markdown(result))
    return result


def markdown(result: dict[str, Any]) -> str:
    """A table of the summary (one line per source)."""
    k = result["config"]["k"]
    lines = [f"# CSP of seed sources on mp_20/test ({k} seeds a row, unrelaxed)", "",
             f"`python -m bench csp_sources`, settings {json.dumps(result['config'])}", "",
             f"| source | rows seeded | match@1 | match@{k} | valid | 1-6 @1 / @{k} | 7-12 @1 / @{k} | 13-20 @1 / @{k} |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, s in result["sources"].items():
        bins = [s["by_atoms"].get(b) for b in ("1-6", "7-12", "13-20")]
        cells = [f"{b['match_at_1']:.1%} / {b[f'match_at_{k}']:.1%}" if b else "-" for b in bins]
        lines.append(f"| {name} | {s['seeded']} / {s['rows']} | {s['match_at_1']:.1%} | {s[f'match_at_{k}']:.1%} | "
                     f"{s['validity']:.1%} | " + " | ".join(cells) + " |")  # fmt: skip
    return "\n".join(lines) + "\n"
