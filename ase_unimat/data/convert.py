"""The resumable, parallel conversion behind ``unimat-convert``: inputs -> UniMat HDF5 dataset.

Pipeline: :mod:`ase_unimat.data.readers` yields raw records in a fixed order (position 0, 1, ... over
all inputs); chunks of them are parsed and encoded in ``workers`` processes (results come back in
input order); the main process drops excluded / duplicate ids, and every ``batch_size`` input
records it commits a *part*. At the end the parts are merged into the output file.

Crash safety (``kill -9`` at any moment, then the same command again). HDF5 is never written in
place while records are still coming: an HDF5 file killed mid-write can be left unreadable. Instead:

* a journal folder ``OUT.journal/`` holds ``meta.json`` (the run key: a hash of the inputs' paths,
  sizes and mtimes and every option that changes the output) and the parts
  ``part-<first>-<end>.npz``, each covering input positions ``[first, end)`` with the converted
  structures (sparse) and the skipped records. A part is written to a temporary name, fsynced and
  renamed, so it exists completely or not at all;
* a rerun with the same key resumes after the last contiguous part (input records before it are
  read but not parsed again); a leftover temporary file is deleted;
* the merge writes ``OUT.h5.tmp`` (a copy of ``OUT`` with ``--append``), fsyncs it and renames it
  over ``OUT``, so ``OUT`` is always either the old file or the complete new one. The run key is
  recorded in the file's ``history`` attribute; a rerun that finds it there only removes the
  journal. The skipped report ``OUT.skipped.csv`` is rewritten the same way (tmp + rename), its
  rows tagged with the run key so that a repeated merge never lists a record twice.

Thus no record is lost or duplicated and no half-written record is visible; the cost is one copy
of the output per run (``--append`` on a very large file copies it once).

Bad input never aborts a run. A bad record (unreadable, bad id or encoding, overlapping atoms,
too large, ...) is skipped and listed with its reason in ``OUT.skipped.csv``. An input that cannot
be read to its end (truncated gzip, garbage ``.db`` / ``.tar.gz``) ends with one ``unreadable``
skip naming the file and how many of its records were read; the conversion goes on with the other
inputs, ``OUT`` gets everything read, and :attr:`ConvertSummary.unreadable` lists those files (the
CLI prints it as one error line and exits with status 1, on a rerun too).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import multiprocessing
import os
import re
import shutil
import sys
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import h5py
import numpy as np
from tqdm import tqdm

from ase_unimat.core.atomic import atomic_write, fsync_dir
from ase_unimat.core.formula import FormulaError, parse_formula, reduced_formula
from ase_unimat.core.periodic_table import z_to_symbol
from ase_unimat.core.representation import MIN_DISTANCE, RepresentationError, encode
from ase_unimat.data.hdf5 import (
    FORMAT_VERSION,
    DatasetFormatError,
    append_batch,
    create_file,
    ensure_property,
    history,
    open_file,
    read_ids,
    sparse_atoms,
)
from ase_unimat.data.journal import (
    JournalError,
    PartBuilder,
    load_part,
    open_journal,
    part_batch,
    part_end,
    printable,
)
from ase_unimat.data.readers import RawRecord, RecordError, _open_text, expand_inputs, input_format, iter_raw, parse

CHUNK_SIZE = 32  # records per worker task
_REASONS = (
    ("disordered", "disordered"),
    ("outside the periodic-table grid", "unknown_element"),
    ("exceed L", "too_many_per_element"),
    ("NaN or infinite", "non_finite"),
    ("not periodic", "not_periodic"),
    ("volume", "degenerate_cell"),
    ("no atoms", "empty"),
    ("closer than", "overlapping_atoms"),
)


class ConversionError(RuntimeError):
    """A conversion that cannot run as asked (bad inputs or options, a conflicting output or journal)."""


@dataclass(frozen=True)
class ColumnSpec:
    """A property column: stored as ``name``, read from the first of ``sources`` a record has."""

    name: str
    sources: tuple[str, ...]


def parse_columns(text: str) -> tuple[ColumnSpec, ...]:
    """Parse ``"a,b=c|d"``: column ``a`` from source column ``a``; column ``b`` from ``c`` or else ``d``."""
    specs = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, equals, sources = item.partition("=")
        name = name.strip()
        alternatives = tuple(s.strip() for s in (sources if equals else name).split("|") if s.strip())
        if not re.fullmatch(r"[A-Za-z0-9_.\-]+", name) or not alternatives:
            raise ConversionError(f"bad column spec {item!r}: use NAME or NAME=SOURCE[|SOURCE...]")
        specs.append(ColumnSpec(name, alternatives))
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ConversionError(f"column named twice in {text!r}")
    return tuple(specs)


@dataclass(frozen=True)
class ConvertOptions:
    """Options of :func:`convert` (see ``unimat-convert --help``)."""

    n_slots: int = 20
    max_atoms: int = 20
    columns: tuple[ColumnSpec, ...] = ()
    workers: int = 1
    append: bool = False
    overwrite: bool = False
    dedup: bool = False
    exclude: tuple[str, ...] = ()
    exclude_formulas: tuple[str, ...] = ()
    batch_size: int = 512
    progress: bool = False


@dataclass
class ConvertSummary:
    """What a conversion did (counts cover the whole run, including parts done before a resume)."""

    output: str
    skipped_report: str
    records: int
    converted: int
    skipped: dict[str, int]
    seconds: float
    resumed_at: int = 0
    already_done: bool = False
    notes: list[str] = field(default_factory=list)
    #: One message per input that could not be read to its end (skip reason ``unreadable``): the
    #: file, how many of its records were read, and the error. What was read is in the output.
    unreadable: list[str] = field(default_factory=list)

    def text(self) -> str:
        """Human-readable summary lines."""
        if self.already_done:
            head = f"{self.output} already holds this conversion (run recorded in its history); nothing to do"
        else:
            rate = (self.records - self.resumed_at) / self.seconds if self.seconds > 0 else 0.0
            head = f"{self.records} records read in {self.seconds:.1f} s ({rate:.0f} records/s)"
            if self.resumed_at:
                head += f", resumed after record {self.resumed_at}"
        lines = [head, f"converted: {self.converted} -> {self.output}"]
        n_skipped = sum(self.skipped.values())
        detail = ", ".join(f"{k} {v}" for k, v in sorted(self.skipped.items(), key=lambda kv: -kv[1]))
        lines.append(f"skipped: {n_skipped}" + (f" ({detail}) -> {self.skipped_report}" if n_skipped else ""))
        lines.extend(self.notes)
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------ worker side


def classify(error: Exception) -> str:
    """Short skip reason of a representation error message."""
    message = str(error)
    for pattern, reason in _REASONS:
        if pattern in message:
            return reason
    return "invalid_structure"


def _pick_properties(properties: dict, columns: Sequence[ColumnSpec]) -> dict:
    picked = {}
    for spec in columns:
        for source in spec.sources:
            value = properties.get(source)
            if value is not None and value != "":
                picked[spec.name] = value
                break
    return picked


def convert_records(raws: Sequence[RawRecord], *, n_slots: int, max_atoms: int,
                    columns: Sequence[ColumnSpec] = ()) -> list[tuple]:
    """Parse and encode raw records (runs in worker processes).

    Returns per record ``("ok", id, source, numbers (n,), frac (n, 3), cellpar (6,), properties)`` or
    ``("skip", id, source, reason, message)``. Besides what the readers and :func:`encode` refuse,
    a record is skipped as ``bad_id`` when its id holds control characters (HDF5 cannot store a NUL)
    and as ``overlapping_atoms`` when two atoms are closer than
    :data:`~ase_unimat.representation.MIN_DISTANCE` (0.5 Angstrom, periodic images included).
    """

    out = []
    for raw in raws:
        record = parse(raw, max_atoms=max_atoms)
        item = record.structure_or_error
        if isinstance(item, RecordError):
            out.append(("skip", record.record_id, record.source, item.reason, item.message))
            continue
        if not record.record_id.isprintable():
            out.append(("skip", record.record_id, record.source, "bad_id",
                        f"material id {printable(record.record_id)!r} holds control characters"))
            continue
        try:
            if len(item) > max_atoms:
                raise RecordError("too_many_atoms", f"{len(item)} atoms > max atoms {max_atoms}")
            coords, cellpar = encode(item, n_slots=n_slots, min_distance=MIN_DISTANCE)
            numbers, frac = sparse_atoms(coords)
        except RecordError as err:
            out.append(("skip", record.record_id, record.source, err.reason, err.message))
            continue
        except RepresentationError as err:
            out.append(("skip", record.record_id, record.source, classify(err), str(err)))
            continue
        except Exception as err:  # noqa: BLE001 - one bad structure must not stop the run
            out.append(("skip", record.record_id, record.source, "invalid_structure", f"{type(err).__name__}: {err}"))
            continue
        properties = _pick_properties(record.properties, columns)
        out.append(("ok", record.record_id, record.source, numbers.astype(np.uint8), frac, cellpar, properties))
    return out


# ------------------------------------------------------------------------------------------ journal


# ------------------------------------------------------------------------------------------ driver


def _identity(path: Path) -> list:
    """What identifies an input's content for the run key: path, size and mtime (of each file in a folder)."""
    path = path.resolve()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file())
        return [str(path), [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files]]
    stat = path.stat()
    return [str(path), stat.st_size, stat.st_mtime_ns]


def run_key(paths: Sequence[Path], options: ConvertOptions) -> str:
    """Hash of the inputs and of every option that changes the output."""

    ident = {
        "inputs": [_identity(p) for p in paths], "L": options.n_slots, "max_atoms": options.max_atoms,
        "columns": [[c.name, list(c.sources)] for c in options.columns], "dedup": options.dedup,
        "exclude": [_identity(Path(p)) for p in options.exclude], "append": options.append,
        **({"exclude_formulas": [_identity(Path(p)) for p in options.exclude_formulas]}
           if options.exclude_formulas else {}),
        "format_version": FORMAT_VERSION,
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def read_id_list(path: str | Path) -> set[str]:
    """Material ids from a dataset file (.h5), a CSV with ``material_id`` (.csv/.csv.gz) or a text file."""
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"no such id file: {path}")
    if path.suffix in (".h5", ".hdf5"):
        return set(read_ids(path))
    if input_format(path) == "csv":
        with _open_text(path) as handle:
            reader = csv.DictReader(handle)
            if "material_id" not in (reader.fieldnames or []):
                raise ConversionError(f"{path} has no material_id column")
            return {row["material_id"].strip() for row in reader}
    return {line.strip() for line in path.read_text().splitlines() if line.strip()}


_FORMULA_COLUMNS = ("reduced_formula", "pretty_formula", "formula", "composition")


def read_formula_list(path: str | Path) -> set[str]:
    """Reduced formulas (Hill order) of every structure listed in ``path``.

    ``path`` is a dataset (.h5, its ``formula`` strings), a CSV with one of the columns
    ``reduced_formula``, ``pretty_formula``, ``formula`` or ``composition`` (.csv/.csv.gz), or a
    text file with one formula per line. Any formula of a composition (``Mg2O2``, ``MgO``) gives the
    same reduced formula, so every polymorph and cell size of it is excluded.
    """

    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"no such formula file: {path}")
    if path.suffix in (".h5", ".hdf5"):
        with h5py.File(path, "r") as f:
            texts = [t.decode() if isinstance(t, bytes) else str(t) for t in f["formula"][:]]
    elif input_format(path) == "csv":
        with _open_text(path) as handle:
            reader = csv.DictReader(handle)
            column = next((c for c in _FORMULA_COLUMNS if c in (reader.fieldnames or [])), None)
            if column is None:
                raise ConversionError(f"{path} has none of the columns {', '.join(_FORMULA_COLUMNS)}")
            texts = [row[column] for row in reader]
    else:
        texts = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    formulas = set()
    for text in texts:
        try:
            formulas.add(reduced_formula(parse_formula(text.replace(" ", ""))))
        except FormulaError as err:
            raise ConversionError(f"{path}: {err}") from None
    return formulas


def _raw_stream(paths: Sequence[Path], start: int) -> Iterator[RawRecord]:
    position = 0
    for path in paths:
        for raw in iter_raw(path):
            if position >= start:
                yield raw
            position += 1


def _chunks(stream: Iterable[RawRecord], size: int) -> Iterator[list[RawRecord]]:
    chunk: list[RawRecord] = []
    for raw in stream:
        chunk.append(raw)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _ordered_results(chunks: Iterable[list[RawRecord]], options: ConvertOptions) -> Iterator[list[tuple]]:
    kwargs = {"n_slots": options.n_slots, "max_atoms": options.max_atoms, "columns": options.columns}
    if options.workers <= 1:
        for chunk in chunks:
            yield convert_records(chunk, **kwargs)
        return
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    with ProcessPoolExecutor(max_workers=options.workers, mp_context=context) as pool:
        pending: deque = deque()
        for chunk in chunks:
            pending.append(pool.submit(convert_records, chunk, **kwargs))
            if len(pending) >= 3 * options.workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _check_options(options: ConvertOptions) -> None:
    if not 1 <= options.n_slots <= 255:
        raise ConversionError(f"L must be 1-255, got {options.n_slots}")
    if options.max_atoms < 1:
        raise ConversionError(f"max atoms must be positive, got {options.max_atoms}")
    if options.workers < 1 or options.batch_size < 1:
        raise ConversionError("workers and batch size must be positive")
    if options.append and options.overwrite:
        raise ConversionError("--append and --overwrite exclude each other")


def convert(inputs: Sequence[str | os.PathLike], output: str | os.PathLike, *,
            options: ConvertOptions = ConvertOptions()) -> ConvertSummary:
    """Convert ``inputs`` into the UniMat HDF5 dataset ``output`` (resumable; see module docstring)."""

    t0 = time.perf_counter()
    _check_options(options)
    try:
        paths = expand_inputs(inputs)
    except FileNotFoundError as err:
        raise ConversionError(str(err)) from None
    if not paths:
        raise ConversionError("no inputs given")
    output = Path(output)
    report = output.with_name(output.name + ".skipped.csv")
    journal = output.with_name(output.name + ".journal")
    key = run_key(paths, options)
    existing_ids: list[str] = []
    if output.exists():
        try:
            with open_file(output) as h5:
                done = [h for h in history(h5) if h.get("key") == key]
                n_slots = int(h5.attrs["L"])
        except (DatasetFormatError, OSError) as err:
            raise ConversionError(f"{output} exists and is not a UniMat dataset ({err})") from None
        if done:
            shutil.rmtree(journal, ignore_errors=True)
            h = done[-1]
            return ConvertSummary(str(output), str(report), h["records"], h["converted"], h["skipped"],
                                  time.perf_counter() - t0, already_done=True, unreadable=h.get("unreadable", []))
        if not (options.append or options.overwrite):
            raise ConversionError(f"{output} exists: pass --append to add to it or --overwrite to replace it")
        if options.append:
            if n_slots != options.n_slots:
                raise ConversionError(f"{output} has L = {n_slots}, not {options.n_slots}")
            existing_ids = read_ids(output) if options.dedup else []
    try:
        parts = open_journal(journal, key, paths, n_slots=options.n_slots)
    except JournalError as err:
        raise ConversionError(str(err)) from None
    resumed_at = part_end(parts[-1]) if parts else 0
    excluded = set().union(*(read_id_list(p) for p in options.exclude)) if options.exclude else set()
    excluded_formulas = set().union(*(read_formula_list(p) for p in options.exclude_formulas))
    seen = set(existing_ids)
    if options.dedup:
        for part in parts:
            seen.update(load_part(part)["material_id"].tolist())

    def accept(record_id: str, numbers) -> tuple[str, str] | None:
        if record_id in excluded:
            return ("excluded", "id is in an --exclude list")
        if excluded_formulas and _reduced_formula_of(numbers) in excluded_formulas:
            return ("excluded_formula", "composition is in an --exclude-formulas list")
        if options.dedup:
            if record_id in seen:
                return ("duplicate", "id converted earlier")
            seen.add(record_id)
        return None

    _convert_parts(paths, journal, parts, resumed_at, options, accept)
    summary = _merge(output, report, journal, key, paths, parts, options)
    summary.seconds = time.perf_counter() - t0
    summary.resumed_at = resumed_at
    return summary


def _reduced_formula_of(numbers) -> str:
    z, counts = np.unique(np.asarray(numbers), return_counts=True)
    return reduced_formula({z_to_symbol(int(a)): int(c) for a, c in zip(z, counts, strict=True)})


def _convert_parts(paths, journal, parts, resumed_at, options, accept) -> None:
    chunks = _chunks(_raw_stream(paths, resumed_at), CHUNK_SIZE)
    results = _ordered_results(chunks, options)
    builder = PartBuilder(resumed_at, [c.name for c in options.columns])
    with tqdm(desc="converting", unit=" records", initial=resumed_at, disable=not options.progress,
              file=sys.stderr, mininterval=1.0) as bar:
        for chunk_results in results:
            for result in chunk_results:
                builder.add(result, accept=accept)
            bar.update(len(chunk_results))
            if builder.end - builder.start >= options.batch_size:
                parts.append(builder.write(journal))
                builder = PartBuilder(builder.end, [c.name for c in options.columns])
        if builder.end > builder.start:
            parts.append(builder.write(journal))


def _merge(output, report, journal, key, paths, parts, options) -> ConvertSummary:
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
