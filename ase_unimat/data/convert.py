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
inputs, ``OUT`` gets everything read, and :attr:`~ase_unimat.data.convert_options.ConvertSummary.unreadable` lists those files (the
CLI prints it as one error line and exits with status 1, on a rerun too).

The parts of this module's pipeline live beside it: the options, column specs and summary in
:mod:`~ase_unimat.data.convert_options`, the worker side (parse, check, encode) in
:mod:`~ase_unimat.data.convert_worker`, the journal and run key in :mod:`~ase_unimat.data.journal`,
the exclusion lists in :mod:`~ase_unimat.data.exclude_lists` and the merge in
:mod:`~ase_unimat.data.convert_merge`. This module is the driver: read, convert in order, commit parts.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from tqdm import tqdm

from ase_unimat.core.process import die_with_parent
from ase_unimat.data.convert_merge import merge_parts
from ase_unimat.data.convert_options import ConversionError, ConvertOptions, ConvertSummary
from ase_unimat.data.convert_worker import convert_records
from ase_unimat.data.exclude_lists import read_formula_list, read_id_list, reduced_formula_of
from ase_unimat.data.hdf5 import DatasetFormatError, history, open_file, read_ids
from ase_unimat.data.journal import JournalError, PartBuilder, load_part, open_journal, part_end, run_key
from ase_unimat.data.readers import expand_inputs, iter_raw
from ase_unimat.data.records import RawRecord

CHUNK_SIZE = 32  # records per worker task


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
    with ProcessPoolExecutor(max_workers=options.workers, mp_context=context, initializer=die_with_parent,
                             initargs=(os.getpid(),)) as pool:  # fmt: skip  # no worker outlives a kill -9
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
            options: ConvertOptions = ConvertOptions()) -> ConvertSummary:  # noqa: B008 - frozen, immutable
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
        if excluded_formulas and reduced_formula_of(numbers) in excluded_formulas:
            return ("excluded_formula", "composition is in an --exclude-formulas list")
        if options.dedup:
            if record_id in seen:
                return ("duplicate", "id converted earlier")
            seen.add(record_id)
        return None

    _convert_parts(paths, journal, parts, resumed_at, options, accept)
    summary = merge_parts(output, report, journal, key, paths, parts, options)
    summary.seconds = time.perf_counter() - t0
    summary.resumed_at = resumed_at
    return summary


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

