"""The search examples run as a user would run them (EMT and random seeds keep them fast)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pymatgen.core import Structure

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _run(script: str, *args: str, cwd: Path) -> str:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_search_then_read_back_with_pymatgen(tmp_path):
    output = _run("search_with_own_calculator.py", "--formula", "CuAu", "-n", "3", "--out", "run", cwd=tmp_path)
    assert "unique of 3 relaxed" in output
    assert len(list((tmp_path / "run" / "res").glob("*.res"))) == 3

    listing = _run("read_results_with_pymatgen.py", "run", cwd=tmp_path)
    assert "lowest enthalpy:" in listing
    cif = next((tmp_path / "run").glob("*.cif"))
    assert Structure.from_file(cif).composition.reduced_formula == "CuAu"


def test_two_level_search_example(tmp_path):
    output = _run("two_level_search.py", "-n", "4", "--top", "2", "--out", "run", cwd=tmp_path)
    assert "first-level rank 1" in output and "L1 rank" in output
    assert len(list((tmp_path / "run" / "refine" / "records").glob("*.json"))) == 2
