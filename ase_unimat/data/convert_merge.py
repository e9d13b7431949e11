"""The last step of a conversion: the journal's parts merged into the output file, atomically.

Owns the merge (``OUT.h5.tmp``, a copy of ``OUT`` with ``--append``, gets every part's structures,
the property columns, the sources and a ``history`` record with the run key; it is fsynced and
renamed over ``OUT``, then the journal is removed) and the skipped-records report
``OUT.skipped.csv`` (rewritten the same way, this run's rows replaced, other runs' kept). See
:mod:`ase_unimat.data.convert` for the crash-safety scheme this is the end of.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import h5py
import numpy as np

from ase_unimat.core.atomic import atomic_write, fsync_dir
from ase_unimat.data.convert_options import ConversionError, ConvertOptions, ConvertSummary
from ase_unimat.data.hdf5 import append_batch, create_file, ensure_property, history
from ase_unimat.data.journal import load_part, part_batch, part_end


def merge_parts(output: Path, report: Path, journal: Path, key: str, paths: Sequence[Path], parts: Sequence[Path],
                options: ConvertOptions) -> ConvertSummary:  # fmt: skip
    """Write ``output`` (and ``report``) from the committed ``parts`` of run ``key``; remove the journal.

    Returns the run's summary (``seconds`` and ``resumed_at`` are the caller's to set).
    ``ConversionError`` when a column holds integers in the appended-to file but not in these inputs.
    """
    loaded = [load_part(p) for p in parts]
    records = part_end(parts[-1]) if parts else 0
    skipped = Counter(str(row[2]) for part in loaded for row in part["skipped"])
    converted = sum(len(part["natoms"]) for part in loaded)
    unreadable = [str(row[3]) for part in loaded for row in part["skipped"] if str(row[2]) == "unreadable"]
    notes = []
    integer, present = {}, Counter()
    for spec in options.columns:
        j_parts = [(part, list(part["columns"]).index(spec.name)) for part in loaded]
        integer[spec.name] = all(bool(part["integer"][j]) for part, j in j_parts)
        present[spec.name] = sum(int(part["present"][j]) for part, j in j_parts)
        n_bad = sum(int(part["non_numeric"][j]) for part, j in j_parts)
        if n_bad:
            notes.append(f"note: column {spec.name}: {n_bad} non-numeric values stored as missing")
        integer[spec.name] &= present[spec.name] > 0
    tmp = output.with_name(output.name + ".tmp")
    if options.append and output.exists():
        shutil.copyfile(output, tmp)
        h5 = h5py.File(tmp, "a")
    else:
        h5 = create_file(tmp, n_slots=options.n_slots)
    with h5:
        for spec in options.columns:
            ds = ensure_property(h5, spec.name, integer=integer[spec.name])
            if np.issubdtype(ds.dtype, np.integer) and not integer[spec.name] and present[spec.name]:
                h5.close()
                tmp.unlink()
                raise ConversionError(f"column {spec.name} holds integers in {output} but not in these inputs")
        for part in loaded:
            append_batch(h5, part_batch(part))
        sources = json.loads(h5.attrs.get("source", "[]")) + [str(p) for p in paths]
        h5.attrs["source"] = json.dumps(sources)
        runs = history(h5) + [{
            "key": key, "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "inputs": [str(p) for p in paths], "records": records, "converted": converted,
            "skipped": dict(skipped), "L": options.n_slots, "max_atoms": options.max_atoms,
            "columns": [c.name for c in options.columns], "dedup": options.dedup,
            **({"unreadable": unreadable} if unreadable else {}),
        }]
        h5.attrs["history"] = json.dumps(runs)
    with open(tmp, "rb+") as handle:
        os.fsync(handle.fileno())
    _write_report(report, key, loaded)
    os.replace(tmp, output)
    fsync_dir(output.parent)
    shutil.rmtree(journal, ignore_errors=True)
    return ConvertSummary(str(output), str(report), records, converted, dict(skipped), 0.0, notes=notes,
                          unreadable=unreadable)


def _write_report(report: Path, key: str, loaded: Sequence[dict]) -> None:
    """Rewrite the skipped-records CSV: rows of other runs kept, this run's rows replaced."""
    header = ["run", "record_id", "source", "reason", "message"]
    rows = []
    if report.exists():
        with open(report, newline="", encoding="utf-8") as handle:
            rows = [r for r in csv.reader(handle)][1:]
        rows = [r for r in rows if r and r[0] != key]
    rows += [[key, *row] for part in loaded for row in part["skipped"].tolist()]

    def write(handle) -> None:
        text = _csv_text(header, rows)
        handle.write(text.encode("utf-8"))

    atomic_write(report, write)


def _csv_text(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """CSV text of a header and rows."""

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()
