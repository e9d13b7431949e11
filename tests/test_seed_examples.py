"""The seed examples run end to end (random/template/cell seeds, and UniMat with a tiny model)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from ase.io import read

REPO = Path(__file__).resolve().parents[1]


def run_example(name: str, *args: str, cwd: Path) -> str:
    done = subprocess.run([sys.executable, str(REPO / "examples" / name), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env={"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
                                                       "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    torch = pytest.importorskip("torch")
    from ase_unimat.model.config import load_config, to_dict
    from ase_unimat.model.diffusion import build_model

    torch.manual_seed(0)
    config = load_config(REPO / "models" / "configs" / "test.toml")
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    torch.save({"config": to_dict(config), "model": build_model(config).state_dict()}, path)
    return path


def test_generate_seeds_random_template_and_cell(tmp_path):
    from ase.build import bulk
    from ase.io import write

    out = run_example("generate_seeds.py", "--formula", "Mg2SiO4", "-n", "3", "--out", "r.extxyz", cwd=tmp_path)
    assert "Mg2SiO4-random-000002" in out
    assert [a.info["seed_id"] for a in read(tmp_path / "r.extxyz", ":")] == [f"Mg2SiO4-random-{k:06d}" for k in range(3)]
    cifs = tmp_path / "cifs"
    cifs.mkdir()
    write(cifs / "nacl.cif", bulk("NaCl", "rocksalt", a=5.64))
    out = run_example("generate_seeds.py", "--formula", "KBr", "-n", "4", "--seeds", "template:0.5,random:0.5",
                      "--reference", str(cifs), "--out", "t.extxyz", cwd=tmp_path)
    assert "KBr-template-000000" in out and "KBr-random-000001" in out
    (tmp_path / "Al.cell").write_text("%BLOCK POSITIONS_FRAC\nAl 0 0 0 # Al1 % NUM=4\n%ENDBLOCK POSITIONS_FRAC\n"
                                      "#VARVOL=16\n#MINSEP=2.2\n")
    out = run_example("generate_seeds.py", "--cell", "Al.cell", "-n", "2", "--out", "c.extxyz", cwd=tmp_path)
    assert "Al4-cell-000001" in out


@pytest.mark.slow
def test_generate_seeds_with_a_tiny_model(tmp_path, tiny_checkpoint):
    out = run_example("generate_seeds.py", "--formula", "CuAu", "-n", "2", "--seeds", "mixed:0.5", "--model",
                      str(tiny_checkpoint), "--out", "u.extxyz", cwd=tmp_path)
    assert "CuAu-unimat-000000" in out and "CuAu-random-000001" in out


@pytest.mark.slow
def test_ga_start_population_with_a_tiny_model(tmp_path, tiny_checkpoint):
    pytest.importorskip("ase_ga")
    from ase_ga.data import DataConnection

    out = run_example("ga_start_population.py", "--formula", "Cu2Au2", "--population", "3", "--model",
                      str(tiny_checkpoint), "--steps", "3", "--db", "ga.db", cwd=tmp_path)
    assert "wrote 3 start candidates" in out
    assert DataConnection(str(tmp_path / "ga.db")).get_number_of_unrelaxed_candidates() == 3
