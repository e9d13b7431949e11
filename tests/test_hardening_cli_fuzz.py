"""Issue 16: a seeded table of hostile argument lists and files for every ``unimat-*`` command.

Each case must end with exit != 0, one ``Error:`` line, no traceback (the exception click saw is
its own ``SystemExit``), and nothing touched in the working folder but what the case may write.
"""

from __future__ import annotations

import gzip
import random

import pytest
from ase_unimat.cli.airss import main as airss
from ase_unimat.cli.convert import main as convert
from ase_unimat.cli.eval import main as evaluate
from ase_unimat.cli.sample import main as sample
from ase_unimat.cli.train import main as train
from click.testing import CliRunner

CU = ["--formula", "Cu", "-n", "1", "--calculator", "emt", "--quiet"]

CASES = [
    (airss, ["--formula", "Xx2", "--calculator", "emt"]),
    (airss, ["--formula", "", "--calculator", "emt"]),
    (airss, ["--formula", "Cu", "-n", "0"]),
    (airss, ["--formula", "Cu", "-n", "-5"]),
    (airss, [*CU, "--pressure", "nan"]),
    (airss, [*CU, "--pressure", "-1e9"]),
    (airss, [*CU, "--fmax", "-1"]),
    (airss, [*CU, "--time-limit", "-1"]),
    (airss, [*CU, "--max-steps", "-3"]),
    (airss, ["--formula", "Cu", "-n", "1", "--calculator", "nosuch"]),
    (airss, ["--formula", "Cu", "-n", "1", "--calculator", "os:nosuchfactory"]),
    (airss, [*CU, "--seeds", "bogus"]),
    (airss, [*CU, "--seeds", "unimat:2,random:-1"]),
    (airss, [*CU, "--formula-units", "5-1"]),
    (airss, [*CU, "--formula-units", "0"]),
    (airss, [*CU, "--workers", "0"]),
    (airss, [*CU, "--unimat-strength", "abc"]),
    (airss, ["--cell", "garbage.cell", "-n", "1", "--calculator", "emt"]),
    (airss, ["--cell", "empty.cell", "-n", "1", "--calculator", "emt"]),
    (airss, ["--cell", "missing.cell", "-n", "1", "--calculator", "emt"]),
    (airss, ["--cell", "targvol.cell", "-n", "1", "--calculator", "emt"]),
    (airss, ["--formula", "Cu", "--cell", "garbage.cell"]),
    (airss, [*CU, "--out", "a_file"]),
    (airss, [*CU, "--out", "foreign"]),
    (airss, [*CU, "--seeds", "unimat", "--model", "bad.pt", "--formula-units", "1"]),
    (airss, [*CU, "--seeds", "unimat", "--model", "missing.pt"]),
    (airss, ["report", "foreign"]),
    (airss, ["report", "missing_dir"]),
    (sample, ["--formula", "Xx", "--quiet"]),
    (sample, ["--formula", "NaCl", "-n", "0", "--quiet"]),
    (sample, ["--formula", "NaCl", "--steps", "0", "--quiet"]),
    (sample, ["--formula", "NaCl", "--model", "bad.pt", "--quiet", "--out", "o.extxyz"]),
    (sample, ["--formula", "NaCl", "--model", "missing.pt", "--quiet", "--out", "o.extxyz"]),
    (sample, ["--formula", "NaCl", "--quiet", "--out", "a_file/o.cif"]),
    (sample, ["--formula", "NaCl", "--quiet", "--out", "o.weird"]),
    (sample, ["--formula", "NaCl", "--formula-units", "x", "--quiet"]),
    (evaluate, ["garbage.xyz", "--reference", "garbage.xyz", "--out", "m.json"]),
    (evaluate, ["garbage.traj", "--reference", "garbage.traj", "--out", "m.json"]),
    (evaluate, ["missing.xyz", "--reference", "garbage.xyz", "--out", "m.json"]),
    (evaluate, ["garbage.h5", "--reference", "garbage.h5", "--out", "m.json"]),
    (evaluate, ["empty.xyz", "--reference", "empty.xyz", "--out", "m.json"]),
    (train, ["nosuchconfig", "--out", "run"]),
    (train, ["cpu", "--out", "a_file/run", "--quiet"]),
    (train, ["garbage.toml", "--out", "run"]),
    (convert, ["build", "missing.csv", "-o", "o.h5"]),
    (convert, ["build", "truncated.csv.gz", "-o", "o.h5"]),
    (convert, ["build", "garbage.db", "-o", "o.h5"]),
    (convert, ["build", "a_file", "-o", "a_file/o.h5"]),
]

NAMES = {airss: "airss", sample: "sample", evaluate: "eval", train: "train", convert: "convert"}

#: Files a case may create (its output), relative to the working folder.
OUTPUTS = {
    "m.json",
    "o.h5",
    "o.extxyz",
    "run",
    "airss_Cu",
    "airss_Xx2",
    "airss_garbage",
    "airss_empty",
    "airss_targvol",
}


@pytest.fixture
def hostile(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng = random.Random(16)
    noise = bytes(rng.randrange(256) for _ in range(300))
    (tmp_path / "a_file").write_text("user data")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("user notes")
    (tmp_path / "garbage.cell").write_bytes(b"%BLOCK nonsense\n" + noise)
    (tmp_path / "empty.cell").write_text("")
    (tmp_path / "targvol.cell").write_text("#SPECIES=Cu%NUM=1\n#TARGVOL=inf\n")
    (tmp_path / "bad.pt").write_bytes(noise)
    (tmp_path / "garbage.xyz").write_bytes(noise)
    (tmp_path / "garbage.traj").write_bytes(noise)
    (tmp_path / "garbage.h5").write_bytes(noise)
    (tmp_path / "garbage.db").write_bytes(noise)
    (tmp_path / "garbage.toml").write_bytes(b"[[[" + noise[:20])
    (tmp_path / "empty.xyz").write_text("")
    rows = b"".join(f"m-{i},{rng.random()}\n".encode() for i in range(2000))
    packed = gzip.compress(b"material_id,cif\n" + rows)
    (tmp_path / "truncated.csv.gz").write_bytes(packed[: len(packed) // 2])
    return tmp_path


def _snapshot(root):
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize(("command", "args"), CASES, ids=[f"{NAMES[c]}-{i}" for i, (c, _) in enumerate(CASES)])
def test_hostile_input_is_one_error_line(hostile, command, args):
    before = _snapshot(hostile)
    result = CliRunner().invoke(command, args)
    assert result.exit_code != 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, result.output
    after = _snapshot(hostile)
    changed = {p for p in set(before) | set(after) if before.get(p) != after.get(p)}
    assert all(p.split("/")[0] in OUTPUTS or p.startswith("o.h5") for p in changed), changed
