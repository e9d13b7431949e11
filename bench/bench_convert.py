"""unimat-convert: structures/s with 1 and 2 workers, bytes per structure, fast vs pymatgen CIF parsing.

The full run converts every <= 20-atom structure of ../shared/data (all CSVs and the tar.gz) once
per worker count; ``--quick`` converts MP-20 val + test only. Run: ``python -m bench convert``.
"""

from __future__ import annotations

import itertools
import os
import tempfile
import time
from pathlib import Path

SHARED_DATA = Path(os.environ.get("UNIMAT_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
COLUMNS = ("formation_energy_per_atom,e_above_hull=e_above_hull|energy_above_hull,"
           "spacegroup=spacegroup.number|space_group_number")


def data_bytes(path: Path) -> int:
    """Bytes of dataset storage (chunks) in an HDF5 file, without the fixed metadata overhead."""
    import h5py

    total = 0

    def visit(_name, item) -> None:
        nonlocal total
        if isinstance(item, h5py.Dataset):
            total += item.id.get_storage_size()

    with h5py.File(path, "r") as h5:
        h5.visititems(visit)
    return total


def size_report(path: Path, n: int) -> dict:
    """File and data bytes per structure of a dataset file."""
    return {"structures": n, "file_bytes_per_structure": path.stat().st_size / max(n, 1),
            "data_bytes_per_structure": data_bytes(path) / max(n, 1)}


def parse_times(inputs: list[Path], n: int) -> dict:
    """Milliseconds per CIF for the fast P1 reader and for pymatgen over the first ``n`` of each input."""
    from ase_unimat.data.parsing import parse_cif
    from ase_unimat.data.readers import iter_raw

    texts = [raw.payload for path in inputs for raw in itertools.islice(iter_raw(path), n)]
    out = {"cifs": len(texts)}
    for name, fast in (("fast_p1_ms", True), ("pymatgen_ms", False)):
        start = time.perf_counter()
        for text in texts:
            parse_cif(text, fast=fast)
        out[name] = 1e3 * (time.perf_counter() - start) / len(texts)
    return out


def run(*, quick: bool, out_dir: Path) -> dict:
    """Convert the shared data with 1 and 2 workers; sizes and CIF parse times."""
    from ase_unimat.data.convert import convert
    from ase_unimat.data.convert_options import ConvertOptions, parse_columns

    if quick:
        inputs = [SHARED_DATA / "mp_20" / "val.csv.gz", SHARED_DATA / "mp_20" / "test.csv.gz"]
    else:
        inputs = sorted(SHARED_DATA.glob("**/*.csv.gz")) + sorted(SHARED_DATA.glob("**/*.tar.gz"))
    result = {"command": f"python -m bench convert{' --quick' if quick else ''}", "inputs": [str(p) for p in inputs],
              "max_atoms": 20, "L": 20, "load_average_1min_at_start": os.getloadavg()[0], "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, 2):
            out = Path(tmp) / f"all_w{workers}.h5"
            options = ConvertOptions(workers=workers, columns=parse_columns(COLUMNS), batch_size=1024)
            start = time.perf_counter()
            summary = convert(inputs, out, options=options)
            seconds = time.perf_counter() - start
            result["runs"].append({
                "workers": workers, "seconds": seconds, "records": summary.records, "converted": summary.converted,
                "skipped": summary.skipped, "records_per_s": summary.records / seconds,
                "structures_per_s": summary.converted / seconds, "load_average_1min_after": os.getloadavg()[0],
                **size_report(out, summary.converted),
            })
        mp20 = Path(tmp) / "mp20_train.h5"
        summary = convert([SHARED_DATA / "mp_20" / "train.csv.gz"], mp20, options=ConvertOptions())
        result["mp20_train_size"] = size_report(mp20, summary.converted)
    result["cif_parse"] = parse_times(inputs, 20 if quick else 200)
    return result
