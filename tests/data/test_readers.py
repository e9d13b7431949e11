"""Input readers: every format yields its records in order, and a bad record never stops the stream."""

from __future__ import annotations

import gzip
import pickle

import pytest
from ase import Atoms
from structure_inputs import good_cifs, make_inputs, write_csv

from ase_unimat.data.readers import (
    RecordError,
    expand_inputs,
    input_format,
    iter_raw,
    iter_records,
    parse,
)


@pytest.fixture(scope="module")
def cases(tmp_path_factory, shared_data):
    return make_inputs(tmp_path_factory.mktemp("inputs"), shared_data)


def outcome(record) -> str | int:
    item = record.structure_or_error
    return item.reason if isinstance(item, RecordError) else len(item)


@pytest.mark.parametrize("fmt", ["csv", "dir", "tar", "xyz", "traj", "db", "res"])
def test_every_format_yields_every_record(cases, fmt):
    case = cases[fmt]
    records = list(iter_records(case.path))
    ids = [r.record_id for r in records]
    assert set(case.good_ids) <= set(ids)
    assert set(case.skipped) <= set(ids)
    assert len(ids) == len(case.good_ids) + len(case.skipped)
    for record in records:
        if record.record_id in case.good_ids:
            assert isinstance(outcome(record), int) and 7 <= outcome(record) <= 20
    assert all(r.source.startswith(str(case.path)) for r in records)


def test_csv_ids_properties_and_order(cases):
    records = list(iter_records(cases["csv"].path))
    assert [r.record_id for r in records[:3]] == cases["csv"].good_ids
    assert records[1].properties["e_above_hull"] == "0.010" and records[1].properties["spacegroup.number"] == "101"
    assert "cif" not in records[0].properties
    assert outcome(records[3]) == "parse_error"  # the malformed row, and the stream goes on
    assert records[-1].record_id == "bad-big"


def test_csv_without_material_id_uses_row_numbers(tmp_path, shared_data):
    path = tmp_path / "plain.csv"
    rows = good_cifs(shared_data, 2)
    path.write_text("cif\n" + "".join('"' + cif + '"\n' for _, cif in rows))
    assert [r.record_id for r in iter_raw(path)] == ["plain.csv:0", "plain.csv:1"]


def test_csv_without_cif_column_is_an_input_error(tmp_path):
    path = tmp_path / "nocif.csv.gz"
    with gzip.open(path, "wt") as handle:
        handle.write("material_id,structure\nmp-1,x\n")
    with pytest.raises(ValueError, match="has no 'cif' column"):
        list(iter_raw(path))


def test_tar_metadata_supplies_ids_and_properties(cases):
    records = list(iter_records(cases["tar"].path))
    assert records[0].record_id == cases["tar"].good_ids[0]
    assert records[0].properties["e_above_hull"] == "0.5"
    assert records[0].source.endswith("::set/mp_" + records[0].record_id + ".cif")


def test_atoms_formats_carry_ids_and_numeric_info(cases):
    for fmt, key, value in [("xyz", "e_above_hull", 0.25), ("traj", "e_above_hull", 0.25), ("db", "e_above_hull", 0.125)]:
        records = [r for r in iter_records(cases[fmt].path) if r.record_id == cases[fmt].good_ids[0]]
        assert len(records) == 1 and records[0].properties[key] == value, fmt


def test_broken_xyz_frame_is_skipped_alone(cases):
    records = list(iter_records(cases["xyz"].path))
    assert outcome(records[0]) == "parse_error"
    assert [r.record_id for r in records[1:4]] == cases["xyz"].good_ids


def test_ase_format_that_cannot_continue_reports_one_error(tmp_path):
    path = tmp_path / "broken.traj"
    path.write_bytes(b"not a trajectory at all")
    records = list(iter_records(path))
    assert len(records) == 1 and outcome(records[0]) == "parse_error"
    assert "the rest of the file is not read" in records[0].structure_or_error.message


def test_single_cif_and_res_files(cases):
    cif = next(p for p in cases["dir"].path.iterdir() if p.name.startswith("mp-"))
    res = next(p for p in cases["res"].path.iterdir() if p.name.startswith("mp-"))
    for path in (cif, res):
        records = list(iter_records(path))
        assert len(records) == 1 and records[0].record_id == path.stem and isinstance(outcome(records[0]), int)


@pytest.mark.parametrize(
    ("name", "fmt"),
    [("a.csv", "csv"), ("a.CSV.GZ", "csv"), ("a.tar.gz", "tar"), ("a.tgz", "tar"), ("a.db", "db"),
     ("a.extxyz", "xyz"), ("a.xyz", "xyz"), ("a.cif", "cif"), ("a.res", "res"), ("a.traj", "ase"), ("a.vasp", "ase")],
)
def test_input_format(name, fmt):
    assert input_format(name) == fmt


def test_expand_inputs(cases, tmp_path):
    folder = cases["dir"].path
    paths = expand_inputs([str(folder / "mp-*.cif"), folder])
    assert [p.name for p in paths[:3]] == sorted(f"{i}.cif" for i in cases["dir"].good_ids)
    assert paths[-1] == folder
    with pytest.raises(FileNotFoundError, match="no file matches"):
        expand_inputs([str(tmp_path / "*.nothing")])
    with pytest.raises(FileNotFoundError, match="no such file or directory"):
        expand_inputs([tmp_path / "missing.csv"])


def test_record_errors_pickle_and_parse_never_raises(tmp_path, shared_data):
    error = pickle.loads(pickle.dumps(RecordError("parse_error", "boom")))
    assert (error.reason, error.message) == ("parse_error", "boom")
    path = tmp_path / "one.csv"
    write_csv(path, [("x-1", "data_x\n_cell_length_a 3\n")])
    (raw,) = list(iter_raw(path))
    record = parse(raw)
    assert isinstance(record.structure_or_error, RecordError) and record.structure_or_error.reason == "parse_error"
    assert isinstance(parse(raw._replace(kind="atoms", payload=Atoms("H"))).structure_or_error, Atoms)
