"""Template lookup time per formula (ms) against a 10,000-structure reference, leave-one-out.

Protocol. Reference: ``/work/data/train_full.h5`` when it exists, else every structure of at most
20 atoms in ``../shared/data`` (MP-20 train/val/test, the Chemeleon MP-40 splits and the LeMat MP
sample, deduplicated by ``material_id``) converted once with ``unimat-convert`` into a cache
folder. If that holds fewer than ``size`` structures, its rows are repeated (ids suffixed ``#copy``)
up to ``size``: repeats only enlarge the groups a lookup must rank and deduplicate, so this errs on
the slow side. Queries: the compositions of ``n_queries`` random reference rows, each excluding
its own material (and its copies), so the structure itself is never its template. A lookup ranks
and deduplicates all candidates and builds the first 10 as Atoms. Two modes: "precomputed" builds
every group's fingerprints once when the index is made (timed apart, ``precompute_s``), as a long
search or a benchmark would; "lazy" builds a group on its first lookup, so the first query of a
(stoichiometry, natoms) group pays for it ("first_of_group"). The target is <= 50 ms per formula.

Run: ``python -m bench templates`` (writes ``bench/results/templates.json``; ``--quick`` for a short run).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
DEFAULT_REFERENCE = Path("/work/data/train_full.h5")
CACHE = Path(os.environ.get("UNIMAT_BENCH_CACHE", "/tmp/ase_unimat_bench"))
SOURCES = [
    "mp_20/train.csv.gz", "mp_20/val.csv.gz", "mp_20/test.csv.gz",
    "extra_mp/chemeleon_mp40/test.csv.gz", "extra_mp/chemeleon_mp40/random_split_test.csv.gz",
    "extra_mp/chemeleon_mp40/mineral_test.csv.gz", "extra_mp/lemat_mp_random_sample/baseline_data_mp.tar.gz",
]


def reference_file() -> Path:
    """The reference HDF5: the dataset engineer's full training set, else a cached conversion."""
    if DEFAULT_REFERENCE.is_file():
        return DEFAULT_REFERENCE
    from ase_unimat.data.convert import convert
    from ase_unimat.data.convert_options import ConvertOptions

    path = CACHE / "template_reference.h5"
    CACHE.mkdir(parents=True, exist_ok=True)
    convert([str(SHARED / s) for s in SOURCES], path, options=ConvertOptions(max_atoms=20, dedup=True, workers=1))
    return path


def load_arrays(path: Path, size: int):
    """(numbers, cells, fracs, ids) of the file, repeated up to ``size`` rows."""
    import h5py
    import numpy as np

    from ase_unimat.core.representation import lattice_to_cell

    with h5py.File(path, "r") as h5:
        ids = [s.decode() if isinstance(s, bytes) else str(s) for s in h5["material_id"][:]]
        natoms = h5["natoms"][:].astype(np.int64)
        splits = np.cumsum(natoms)[:-1]
        numbers = np.split(h5["atoms/z"][:].astype(np.int64), splits)
        fracs = np.split(h5["atoms/frac"][:].astype(np.float64), splits)
        cells = [lattice_to_cell(lat) for lat in h5["lattice"][:].astype(np.float64)]
    n = len(ids)
    rows = [i % n for i in range(max(size, n))]
    return ([numbers[i] for i in rows], [cells[i] for i in rows], [fracs[i] for i in rows],
            [ids[i] if k < n else f"{ids[i]}#copy{k // n}" for k, i in enumerate(rows)], n)


def _query(index, counts, excluded, n_built: int):
    """One lookup: rank and deduplicate candidates, then build the first ``n_built`` as Atoms."""
    from ase_unimat.search.templates import NoTemplateError

    try:
        result = index.candidates(counts, exclude_ids=excluded)
    except NoTemplateError:
        return 0
    for i in range(min(n_built, len(result))):
        result[i]  # noqa: B018  (builds the Atoms)
    return len(result)


def _stats(values) -> dict:
    import numpy as np

    values = np.asarray(values)
    if not len(values):
        return {"n": 0}
    return {"n": int(len(values)), "mean_ms": float(values.mean()), "median_ms": float(np.median(values)),
            "p95_ms": float(np.percentile(values, 95)), "max_ms": float(values.max())}


def run(*, quick: bool, out_dir: Path, size: int = 10000, n_queries: int | None = None, n_built: int = 10) -> dict:
    """Template lookup ms per formula on a 10k reference (leave-one-out)."""
    import numpy as np

    from ase_unimat.search.templates import TemplateIndex

    n_queries = n_queries or (60 if quick else 400)
    path = reference_file()
    t0 = time.perf_counter()
    numbers, cells, fracs, ids, n_distinct = load_arrays(path, size)
    read_s = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    rows = rng.choice(n_distinct, size=min(n_queries, n_distinct), replace=False)
    copies = size // n_distinct + 2
    result: dict = {"reference": str(path), "reference_structures": len(ids), "distinct_structures": n_distinct,
                    "read_s": read_s, "queries": len(rows), "candidates_built_per_query": n_built, "target_ms": 50.0}
    for mode in ("precomputed", "lazy"):
        t0 = time.perf_counter()
        index = TemplateIndex(numbers, cells, fracs, ids, source=str(path))
        build_s = time.perf_counter() - t0
        index.candidates({"Na": 1, "Cl": 1})  # load pymatgen's element data outside the timings
        t0 = time.perf_counter()
        if mode == "precomputed":
            index.precompute()
        precompute_s = time.perf_counter() - t0
        seen: set = set()
        times, cold, found = [], [], []
        for row in rows:
            counts = dict(index._counts[row])
            excluded = {ids[row]} | {f"{ids[row]}#copy{c}" for c in range(1, copies)}
            key = (tuple(sorted(counts.values())), sum(counts.values()))
            t = time.perf_counter()
            found.append(_query(index, counts, excluded, n_built))
            times.append(1e3 * (time.perf_counter() - t))
            cold.append(mode == "lazy" and key not in seen)
            seen.add(key)
        times_a, cold_a = np.array(times), np.array(cold)
        result[mode] = {"index_build_s": build_s, "precompute_s": precompute_s, "groups": len(index._keys),
                        "all": _stats(times_a), "first_of_group": _stats(times_a[cold_a]),
                        "repeat_group": _stats(times_a[~cold_a]),
                        "fraction_with_template": float(np.mean(np.array(found) > 0)),
                        "median_candidates": float(np.median(found))}
    return result


if __name__ == "__main__":  # prints only; `python -m bench templates` writes bench/results/templates.json
    import json

    print(json.dumps(run(quick=False, out_dir=Path(__file__).parent / "results"), indent=2))
