"""unimat-convert through click's CliRunner: every format, broken records, options, crashes and resume."""

from __future__ import annotations

import contextlib
import csv
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
from ase_unimat.cli.convert import main
from click.testing import CliRunner
from structure_inputs import make_inputs, write_csv

import ase_unimat.data.convert as convert_module
from ase_unimat.data.convert import convert
from ase_unimat.data.convert_options import ConversionError, ConvertOptions, parse_columns
from ase_unimat.data.hdf5 import read_ids

FORMATS = ["csv", "dir", "tar", "xyz", "traj", "db", "res"]


@pytest.fixture(scope="module")
def cases(tmp_path_factory, shared_data):
    return make_inputs(tmp_path_factory.mktemp("inputs"), shared_data)


def run(*args: str, code: int = 0):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result


def skipped_rows(output) -> list[dict]:
    with open(f"{output}.skipped.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def contents(path) -> dict:
    """Everything a reader sees in a dataset file, for comparing two conversions."""
    with h5py.File(path, "r") as h5:
        out = {name: h5[name][:] for name in ("coords", "lattice", "composition", "natoms", "atoms/z", "atoms/frac")}
        out["material_id"] = h5["material_id"].asstr()[:].tolist()
        out.update({f"properties/{k}": v[:] for k, v in h5["properties"].items()})
    out["skipped"] = [tuple(r.values()) for r in skipped_rows(path)]
    return out


def assert_same_contents(a, b) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], np.ndarray):
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
        else:
            assert a[key] == b[key], key


@pytest.mark.parametrize("fmt", FORMATS)
def test_build_every_format_with_broken_records(cases, fmt, tmp_path):
    case = cases[fmt]
    out = tmp_path / "out.h5"
    result = run(case.path, "-o", out, "--no-progress", "--columns", "e_above_hull")
    assert f"converted: {len(case.good_ids)} -> {out}" in result.output
    assert f"skipped: {len(case.skipped)} (" in result.output
    assert read_ids(out) == case.good_ids
    assert {r["record_id"]: r["reason"] for r in skipped_rows(out)} == case.skipped
    assert all(r["message"] and r["source"].startswith(str(case.path)) for r in skipped_rows(out))
    info = run("info", out).output
    assert f"{len(case.good_ids)} structures, L = 20" in info and "elements:" in info


def test_build_is_the_default_command_and_workers_do_not_change_the_output(cases, tmp_path):
    run(cases["csv"].path, "-o", tmp_path / "a.h5", "--no-progress", "--columns", "e_above_hull")
    run("build", cases["csv"].path, "-o", tmp_path / "b.h5", "--workers", "2", "--no-progress",
        "--columns", "e_above_hull")
    assert_same_contents(contents(tmp_path / "a.h5"), contents(tmp_path / "b.h5"))


def test_properties_aliases_integers_and_non_numeric(cases, tmp_path):
    out = tmp_path / "p.h5"
    run(cases["csv"].path, cases["tar"].path, "-o", out, "--no-progress",
        "--columns", "e_above_hull,spacegroup=spacegroup.number|spacegroup,missing")
    with h5py.File(out, "r") as h5:
        sg, ehull, missing = h5["properties/spacegroup"][:], h5["properties/e_above_hull"][:], h5["properties/missing"][:]
    assert sg.dtype == np.int64 and list(sg[:3]) == [100, 101, 102] and list(sg[3:]) == [-1] * 3  # tar: symbols
    np.testing.assert_allclose(ehull, [0.0, 0.01, 0.02, 0.5, 0.5, 0.5])
    assert np.isnan(missing).all()
    result = run(cases["csv"].path, "-o", tmp_path / "q.h5", "--no-progress", "--columns", "id=material_id")
    assert "column id: 3 non-numeric values stored as missing" in result.output


def test_max_atoms_and_l(cases, tmp_path):
    out = tmp_path / "small.h5"
    run(cases["csv"].path, "-o", out, "--no-progress", "--max-atoms", "14", "--L", "12")
    reasons = {r["record_id"]: r["reason"] for r in skipped_rows(out)}
    assert reasons[cases["csv"].good_ids[1]] == "too_many_atoms"  # 20 atoms > 14
    with h5py.File(out, "r") as h5:
        assert h5.attrs["L"] == 12 and h5["coords"].shape[1] == 12
    out = tmp_path / "tiny_l.h5"
    run(cases["csv"].path, "-o", out, "--no-progress", "--L", "1")
    assert "too_many_per_element" in {r["reason"] for r in skipped_rows(out)}


def test_existing_output_append_dedup_exclude_overwrite(cases, tmp_path):
    out = tmp_path / "grow.h5"
    run(cases["csv"].path, "-o", out, "--no-progress")
    result = run(cases["dir"].path, "-o", out, "--no-progress", code=1)
    assert result.output.strip().count("\n") == 0 and "exists: pass --append" in result.output
    run(cases["dir"].path, "-o", out, "--no-progress", "--append")
    assert len(read_ids(out)) == 6
    again = run(cases["dir"].path, "-o", out, "--no-progress", "--append")
    assert "already holds this conversion" in again.output and len(read_ids(out)) == 6
    run(cases["tar"].path, "-o", out, "--no-progress", "--append", "--dedup")
    assert len(read_ids(out)) == 6
    assert {r["reason"] for r in skipped_rows(out) if r["source"].startswith(str(cases["tar"].path))} >= {"duplicate"}
    ids_file = tmp_path / "exclude.txt"
    ids_file.write_text(cases["csv"].good_ids[0] + "\n")
    run(cases["csv"].path, "-o", out, "--no-progress", "--overwrite", "--exclude", ids_file)
    assert read_ids(out) == cases["csv"].good_ids[1:]
    assert {r["record_id"]: r["reason"] for r in skipped_rows(out)}[cases["csv"].good_ids[0]] == "excluded"
    with h5py.File(out, "r") as h5:  # --overwrite replaced the file, with a history of one run
        assert "1 runs" not in h5.attrs["history"] and h5.attrs["history"].count('"key"') == 1
    run(cases["csv"].path, "-o", tmp_path / "ex.h5", "--no-progress", "--exclude", out)
    assert read_ids(tmp_path / "ex.h5") == cases["csv"].good_ids[:1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["/nonexistent/missing.csv", "-o", "{out}"], "no such file or directory"),
        (["{csv}", "-o", "{out}", "--columns", "a=,"], "bad column spec"),
        (["{csv}", "-o", "{out}", "--append", "--overwrite"], "exclude each other"),
        (["{csv}", "-o", "{out}", "--n-slots", "0"], "Invalid value for '--n-slots'"),
        (["info", "{csv}"], "not a unimat-hdf5 file|unable to open|signature"),
        (["{nocif}", "-o", "{out}"], "has no 'cif' column"),
    ],
)
def test_bad_cli_input_is_one_line_and_nonzero(cases, tmp_path, args, message):
    import re

    nocif = tmp_path / "nocif.csv"
    nocif.write_text("material_id\nmp-1\n")
    args = [a.format(csv=cases["csv"].path, nocif=nocif, out=tmp_path / "x.h5") for a in args]
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0
    assert re.search(message, result.output), result.output
    assert "Traceback" not in result.output


def test_help_is_instant_and_has_examples():
    result = run("--help")
    assert "Examples:" in result.output and "unimat-convert info" in result.output
    assert "Examples:" in run("build", "--help").output


def test_parse_columns():
    specs = parse_columns("a, b=c|d ,")
    assert [(s.name, s.sources) for s in specs] == [("a", ("a",)), ("b", ("c", "d"))]
    with pytest.raises(ConversionError, match="named twice"):
        parse_columns("a,a=b")


# ------------------------------------------------------------------------------------------ crashes


def many_records(tmp_path, shared_data, n=120) -> str:
    """A CSV of ``n`` MP-20 rows with a broken row every 10th."""
    from ase_unimat.data.readers import iter_raw

    rows = []
    for i, raw in enumerate(iter_raw(shared_data / "mp_20" / "train.csv.gz")):
        rows.append((raw.record_id, raw.payload if i % 10 else raw.payload[:200]))
        if len(rows) == n:
            break
    path = tmp_path / "many.csv"
    write_csv(path, rows)
    return str(path)


OPTIONS = ConvertOptions(batch_size=16, columns=parse_columns("e_above_hull"))


def test_resume_after_a_crash_during_conversion(tmp_path, shared_data, monkeypatch):
    source = many_records(tmp_path, shared_data)
    convert([source], tmp_path / "ref.h5", options=OPTIONS)
    real, calls = convert_module.convert_records, []

    def crash_later(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # like a kill: the journal keeps the committed parts
        return real(*args, **kwargs)

    monkeypatch.setattr(convert_module, "convert_records", crash_later)
    with pytest.raises(KeyboardInterrupt):
        convert([source], tmp_path / "out.h5", options=OPTIONS)
    assert not (tmp_path / "out.h5").exists() and (tmp_path / "out.h5.journal").is_dir()
    monkeypatch.setattr(convert_module, "convert_records", real)
    summary = convert([source], tmp_path / "out.h5", options=OPTIONS)
    assert summary.resumed_at == 64 and summary.converted == 108 and summary.skipped == {"parse_error": 12}
    assert not (tmp_path / "out.h5.journal").exists()
    assert_same_contents(contents(tmp_path / "ref.h5"), contents(tmp_path / "out.h5"))


@pytest.mark.parametrize("where", ["before_rename", "after_rename"])
def test_resume_after_a_crash_during_the_merge(tmp_path, shared_data, monkeypatch, where):
    source = many_records(tmp_path, shared_data, n=40)
    options = ConvertOptions(batch_size=16, append=True)
    convert([source], tmp_path / "ref.h5", options=options)
    out = tmp_path / "out.h5"
    real_replace, real_rmtree = os.replace, convert_module.shutil.rmtree

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    if where == "before_rename":
        monkeypatch.setattr(convert_module.os, "replace",
                            lambda src, dst: crash() if str(dst) == str(out) else real_replace(src, dst))
    else:
        monkeypatch.setattr(convert_module.shutil, "rmtree", crash)
    with pytest.raises(KeyboardInterrupt):
        convert([source], out, options=options)
    assert out.exists() == (where == "after_rename")
    monkeypatch.setattr(convert_module.os, "replace", real_replace)
    monkeypatch.setattr(convert_module.shutil, "rmtree", real_rmtree)
    summary = convert([source], out, options=options)
    assert summary.already_done == (where == "after_rename")
    assert not (tmp_path / "out.h5.journal").exists() and not (tmp_path / "out.h5.tmp").exists()
    assert_same_contents(contents(tmp_path / "ref.h5"), contents(out))


def test_journal_of_another_command_is_not_mixed_in(tmp_path, shared_data, monkeypatch):
    source = many_records(tmp_path, shared_data, n=40)
    monkeypatch.setattr(convert_module, "merge_parts", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        convert([source], tmp_path / "out.h5", options=OPTIONS)
    monkeypatch.undo()
    with pytest.raises(ConversionError, match="unfinished conversion of other inputs or options"):
        convert([source], tmp_path / "out.h5", options=ConvertOptions(max_atoms=10))


@pytest.mark.slow
def test_kill_minus_9_at_random_times_then_resume(tmp_path, shared_data):
    """SIGKILL the real CLI (and its workers) several times at random moments; the rerun equals a clean run."""
    train = shared_data / "mp_20" / "train.csv.gz"
    broken = many_records(tmp_path, shared_data, n=60)
    args = [train, broken, "--columns", "e_above_hull,spacegroup=spacegroup.number", "--batch-size", "200",
            "--workers", "2", "--no-progress"]
    command = [sys.executable, "-m", "ase_unimat.cli.convert", *map(str, args)]
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    reference = tmp_path / "ref.h5"
    start = time.perf_counter()
    subprocess.run([*command, "-o", str(reference)], check=True, env=env, cwd=tmp_path, capture_output=True)
    duration = time.perf_counter() - start
    out = tmp_path / "out.h5"
    rng = np.random.default_rng(7)
    killed_with_parts = 0
    journal = tmp_path / "out.h5.journal"

    def parts() -> int:
        return len(list(journal.glob("part-*.npz"))) if journal.is_dir() else 0

    for attempt in range(5):
        process = subprocess.Popen([*command, "-o", str(out)], env=env, cwd=tmp_path, start_new_session=True,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if attempt % 2:  # a moment drawn from a clean run's duration: may land before any part or after the end
            time.sleep(rng.uniform(0.2, 1.1) * duration)
        else:  # a moment after a random number of new parts: mid-run whatever the machine's load
            target = parts() + int(rng.integers(1, 4))
            deadline = time.perf_counter() + 20 * duration
            while process.poll() is None and parts() < target and time.perf_counter() < deadline:
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, 0.05) * duration)
        with contextlib.suppress(ProcessLookupError):  # it may have finished: a late kill
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        killed_with_parts += parts() > 0
        if out.exists():  # a kill that came too late: start over so that the next kill tests something
            out.unlink()
            os.unlink(f"{out}.skipped.csv")
        with h5py.File(reference, "r"):
            pass
    assert killed_with_parts >= 2
    subprocess.run([*command, "-o", str(out)], check=True, env=env, cwd=tmp_path, capture_output=True)
    assert_same_contents(contents(reference), contents(out))
    assert len(read_ids(out)) == 3420 + 54
