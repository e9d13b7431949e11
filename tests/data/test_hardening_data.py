"""Hardening of the conversion against bad input data (issue 16, items 6, 7 and the CIF part of 9).

Each bad record is skipped with its reason and never aborts the run; a file that cannot be read to
its end is one line naming it and where it stopped, with everything read before it kept.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import sqlite3
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.io import write
from ase_unimat.cli.convert import main
from click.testing import CliRunner

from ase_unimat.core.representation import RepresentationError, encode
from ase_unimat.data.convert import convert
from ase_unimat.data.convert_worker import convert_records
from ase_unimat.data.hdf5 import read_ids
from ase_unimat.data.readers import RawRecord, iter_raw


def cif_of(atoms: Atoms) -> str:
    """The P1 CIF pymatgen writes for ``atoms`` (the MP-20 ``cif`` column form)."""
    from pymatgen.io.ase import AseAtomsAdaptor
    from pymatgen.io.cif import CifWriter

    return str(CifWriter(AseAtomsAdaptor.get_structure(atoms)))


CIFS = [cif_of(bulk("NaCl", "rocksalt", a=5.64)), cif_of(bulk("Cu", "fcc", a=3.6, cubic=True))]


def csv_bytes(rows: list[tuple[str, str]]) -> bytes:
    """A CSV (material_id, e_above_hull, cif) of (id, cif) rows, as UTF-8 bytes."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["material_id", "e_above_hull", "cif"])
    for i, (record_id, cif) in enumerate(rows):
        writer.writerow([record_id, f"0.0{i}", cif])
    return buffer.getvalue().encode("utf-8")


def skipped(output: Path) -> dict[str, str]:
    """record id -> reason of the skipped report of ``output``."""
    with open(f"{output}.skipped.csv", newline="", encoding="utf-8") as handle:
        return {row["record_id"]: row["reason"] for row in csv.DictReader(handle)}


def cli(*args) -> object:
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_one_line_error(result, *needles: str) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and "Aborted!" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


# ------------------------------------------------------------------------------ item 6: bad records


def test_control_characters_in_material_id_are_skipped_as_bad_id(tmp_path):
    source = tmp_path / "ids.csv"
    source.write_bytes(csv_bytes([("ok-1", CIFS[0]), ("bad\x00nul", CIFS[1]), ("bad\x1bescape", CIFS[0]),
                                  ("ok-2", CIFS[1])]))
    out = tmp_path / "out.h5"
    summary = convert([source], out)
    assert read_ids(out) == ["ok-1", "ok-2"]
    assert summary.skipped == {"bad_id": 2}
    reasons = skipped(out)
    assert reasons == {"bad\\x00nul": "bad_id", "bad\\x1bescape": "bad_id"}  # escaped, so the report stays text


def test_non_utf8_row_is_skipped_alone_as_bad_encoding(tmp_path):
    good = csv_bytes([("ok-1", CIFS[0]), ("ok-2", CIFS[1]), ("ok-3", CIFS[0])])
    lines = good.split(b"\r\n")
    lines[2] = lines[2].replace(b"ok-2", b"ok-\xff\xfe2", 1)  # invalid UTF-8 in the id of row 1
    lines[3] = lines[3].replace(b"0.02", b"0.0\xe92", 1)  # latin-1 in a property of row 2
    source = tmp_path / "latin.csv.gz"
    source.write_bytes(gzip.compress(b"\r\n".join(lines)))
    out = tmp_path / "out.h5"
    summary = convert([source], out)
    assert read_ids(out) == ["ok-1"]
    assert summary.skipped == {"bad_encoding": 2}
    assert set(skipped(out).values()) == {"bad_encoding"}
    assert "ok-\\udcff\\udcfe2" in skipped(out)


def test_truncated_csv_gz_is_one_line_and_keeps_the_records_before_it(tmp_path):
    ids = [f"mp-{i}" for i in range(400)]
    data = gzip.compress(csv_bytes([(i, CIFS[k % 2]) for k, i in enumerate(ids)]))
    source = tmp_path / "train.csv.gz"
    source.write_bytes(data[: len(data) // 2])
    out = tmp_path / "out.h5"
    result = cli(source, "-o", out, "--quiet")
    assert_one_line_error(result, str(source), "stopped after")
    kept = read_ids(out)
    assert 0 < len(kept) < len(ids) and kept == ids[: len(kept)]
    assert f"stopped after {len(kept)} records" in result.stderr
    assert list(skipped(out).values()) == ["unreadable"]
    again = cli(source, "-o", out, "--quiet")  # a rerun says the same, and changes nothing
    assert_one_line_error(again, str(source), "stopped after")
    assert read_ids(out) == kept


@pytest.mark.parametrize("name", ["garbage.db", "garbage.tar.gz", "garbage.csv.gz", "garbage.xyz", "empty.db"])
def test_unreadable_file_is_one_line_and_other_inputs_are_kept(tmp_path, name):
    rng = np.random.default_rng(16)
    bad = tmp_path / name
    if name == "empty.db":
        sqlite3.connect(bad).execute("CREATE TABLE systems (id INTEGER)").connection.commit()
    else:
        bad.write_bytes(bytes(rng.integers(0, 256, size=4000, dtype=np.uint8)))
    good = tmp_path / "good.csv"
    good.write_bytes(csv_bytes([("ok-1", CIFS[0]), ("ok-2", CIFS[1])]))
    out = tmp_path / "out.h5"
    result = cli(good, bad, "-o", out, "--quiet")
    assert_one_line_error(result, str(bad))
    assert read_ids(out) == ["ok-1", "ok-2"]
    assert list(skipped(out).values()) == ["unreadable"]


def test_reader_ends_an_unreadable_file_with_one_error_record(tmp_path):
    bad = tmp_path / "garbage.tar.gz"
    bad.write_bytes(os.urandom(100) * 10)
    raws = list(iter_raw(bad))
    assert len(raws) == 1 and raws[0].kind == "error"
    assert raws[0].payload.reason == "unreadable" and str(bad) in raws[0].payload.message


# ------------------------------------------------------------------------------ item 7: overlapping atoms


def overlapping(gap: float, *, across_boundary: bool = False) -> Atoms:
    atoms = bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    if across_boundary:  # two Cl, one at x = 0.0 + gap/2 and one at x = a - gap/2 (periodic neighbours)
        atoms += Atoms("Cl2", positions=[[gap / 2, 1.0, 1.0], [5.64 - gap / 2, 1.0, 1.0]])
    else:
        atoms += Atoms("Cl", positions=[atoms.positions[0] + [gap, 0.0, 0.0]])
    return atoms


@pytest.mark.parametrize("across_boundary", [False, True])
def test_encode_refuses_atoms_closer_than_min_distance(across_boundary):
    from ase_unimat.core.representation import MIN_DISTANCE

    assert MIN_DISTANCE == 0.5
    atoms = overlapping(0.003, across_boundary=across_boundary)
    with pytest.raises(RepresentationError, match="closer than 0.5"):
        encode(atoms, min_distance=MIN_DISTANCE)
    encode(atoms)  # generated or noisy structures: no check unless asked
    encode(overlapping(0.6, across_boundary=across_boundary), min_distance=MIN_DISTANCE)


def test_conversion_skips_overlapping_atoms(tmp_path):
    frames = [bulk("Cu", "fcc", a=3.6, cubic=True), overlapping(0.005), bulk("NaCl", "rocksalt", a=5.64)]
    for i, frame in enumerate(frames):
        frame.info["material_id"] = f"x-{i}"
    source = tmp_path / "frames.extxyz"
    write(source, frames, format="extxyz")
    out = tmp_path / "out.h5"
    convert([source], out)
    assert read_ids(out) == ["x-0", "x-2"]
    assert skipped(out) == {"x-1": "overlapping_atoms"}


# ------------------------------------------------------------------------------ item 9: sizes before N^2 work


def big_p1_cif(n: int) -> str:
    """A pymatgen-style P1 CIF of ``n`` Cu atoms on a jittered grid in a large cubic cell."""
    side = int(np.ceil(n ** (1 / 3)))
    grid = np.stack(np.meshgrid(*[np.arange(side)] * 3, indexing="ij"), -1).reshape(-1, 3)[:n]
    frac = (grid + 0.25) / side
    a = 2.6 * side
    head = (f"data_Cu\n_symmetry_space_group_name_H-M   'P 1'\n_cell_length_a   {a}\n_cell_length_b   {a}\n"
            f"_cell_length_c   {a}\n_cell_angle_alpha   90.0\n_cell_angle_beta   90.0\n_cell_angle_gamma   90.0\n"
            "_symmetry_Int_Tables_number   1\nloop_\n _symmetry_equiv_pos_site_id\n _symmetry_equiv_pos_as_xyz\n"
            "  1  'x, y, z'\nloop_\n _atom_site_type_symbol\n _atom_site_label\n _atom_site_symmetry_multiplicity\n"
            " _atom_site_fract_x\n _atom_site_fract_y\n _atom_site_fract_z\n _atom_site_occupancy\n")
    rows = "".join(f"  Cu  Cu{i}  1  {x:.8f}  {y:.8f}  {z:.8f}  1\n" for i, (x, y, z) in enumerate(frac))
    return head + rows


def peak_bytes(function) -> tuple[object, int]:
    tracemalloc.start()
    try:
        value = function()
        return value, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_fast_cif_reader_counts_atoms_before_any_quadratic_array():
    raw = RawRecord("big", "big.cif", "cif", big_p1_cif(3000), {})
    (result,), peak = peak_bytes(lambda: convert_records([raw], n_slots=20, max_atoms=20))
    assert result[0] == "skip" and result[3] == "too_many_atoms", result
    assert peak < 30e6, f"peak {peak / 1e6:.0f} MB"  # the N x N x 3 array alone is 216 MB


def test_fast_cif_reader_duplicate_site_check_is_not_quadratic_in_memory():
    from ase_unimat.data.cif_p1 import NotSimpleCif, parse_p1_cif

    atoms, peak = peak_bytes(lambda: parse_p1_cif(big_p1_cif(3000)))
    assert len(atoms) == 3000 and peak < 40e6, f"peak {peak / 1e6:.0f} MB"
    text = big_p1_cif(8)
    lines = text.splitlines()
    duplicate = "\n".join([*lines, lines[-1].replace("Cu7", "Cu8")]) + "\n"
    with pytest.raises(NotSimpleCif, match="same position"):
        parse_p1_cif(duplicate)
    near_boundary = text.replace("0.12500000  0.12500000  0.12500000", "0.00000000  0.00000000  0.00000000", 1)
    near_boundary += "  Cu  Cu9  1  0.99999999  0.00000000  1.00000000  1\n"  # the same site across x = 1
    with pytest.raises(NotSimpleCif, match="same position"):
        parse_p1_cif(near_boundary)

