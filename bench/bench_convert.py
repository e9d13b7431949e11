"""Benchmark: unimat-convert on all <= 20-atom structures of ../shared/data (every CSV + the tar.gz).

Measures structures/s with 1 and 2 worker processes (one full conversion each), bytes per structure
of the result and of MP-20 train alone, and the CIF parse time of the fast P1 reader vs pymatgen.
Usage: python bench/bench_convert.py [--data ../shared/data] [--workers 1 2]
Writes bench/results/bench_convert.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import h5py  # noqa: E402

from ase_unimat.convert import ConvertOptions, convert, parse_columns  # noqa: E402
from ase_unimat.readers import iter_raw, parse_cif  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
COLUMNS = "formation_energy_per_atom,e_above_hull=e_above_hull|energy_above_hull,spacegroup=spacegroup.number|space_group_number"


def data_bytes(path: Path) -> int:
    """Bytes of dataset storage (chunks) in an HDF5 file, without the fixed metadata overhead."""
    total = 0

    def visit(_name, item):
        nonlocal total
        if isinstance(item, h5py.Dataset):
            total += item.id.get_storage_size()

    with h5py.File(path, "r") as h5:
        h5.visititems(visit)
    return total


def size_report(path: Path, n: int) -> dict:
    return {"structures": n, "file_bytes_per_structure": path.stat().st_size / max(n, 1),
            "data_bytes_per_structure": data_bytes(path) / max(n, 1)}


def parse_times(inputs: list[Path], n: int = 200) -> dict:
    """Milliseconds per CIF for the fast P1 reader and for pymatgen over the first ``n`` of each input."""
    texts = [raw.payload for path in inputs for raw in itertools.islice(iter_raw(path), n)]
    out = {}
    for name, fast in (("fast_p1_ms", True), ("pymatgen_ms", False)):
        start = time.perf_counter()
        for text in texts:
            parse_cif(text, fast=fast)
        out[name] = 1e3 * (time.perf_counter() - start) / len(texts)
    out["cifs"] = len(texts)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    inputs = sorted(args.data.glob("**/*.csv.gz")) + sorted(args.data.glob("**/*.tar.gz"))
    result = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_average_1min_at_start": os.getloadavg()[0]},
        "inputs": [str(p) for p in inputs], "max_atoms": 20, "L": 20, "runs": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        for workers in args.workers:
            out = Path(tmp) / f"all_w{workers}.h5"
            options = ConvertOptions(workers=workers, columns=parse_columns(COLUMNS), batch_size=1024)
            start = time.perf_counter()
            summary = convert(inputs, out, options=options)
            seconds = time.perf_counter() - start
            run = {"workers": workers, "seconds": seconds, "records": summary.records, "converted": summary.converted,
                   "skipped": summary.skipped, "records_per_s": summary.records / seconds,
                   "structures_per_s": summary.converted / seconds, "load_average_1min_after": os.getloadavg()[0],
                   **size_report(out, summary.converted)}
            result["runs"].append(run)
            print(json.dumps(run))
        mp20 = Path(tmp) / "mp20_train.h5"
        summary = convert([args.data / "mp_20" / "train.csv.gz"], mp20, options=ConvertOptions())
        result["mp20_train_size"] = size_report(mp20, summary.converted)
    result["cif_parse"] = parse_times(inputs)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_convert.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("mp20_train_size", "cif_parse")}, indent=2))


if __name__ == "__main__":
    main()
