"""``unimat-airss --refine``: the two-level run end to end, resume after kill -9, and one-line errors for bad input."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from ase.build import bulk
from ase.io import write
from ase_unimat.cli.airss import main
from click.testing import CliRunner

FAST = [
    "--formula",
    "CuAu",
    "--formula-units",
    "1",
    "-n",
    "5",
    "--seeds",
    "random",
    "--fmax",
    "0.1",
    "--max-steps",
    "40",
]

SLOW_EMT = """\
import time
from ase.calculators.emt import EMT


class SlowEMT(EMT):
    def calculate(self, *args, **kwargs):
        time.sleep(self.delay)
        super().calculate(*args, **kwargs)


def factory(delay=0.0):
    calc = SlowEMT()
    calc.delay = float(delay)
    return calc
"""


def _invoke(args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_emt_screen_then_emt_refine_end_to_end(tmp_path):
    out = tmp_path / "run"
    result = _invoke([*FAST, "--calculator", "emt", "--refine", "emt", "--refine-top", "2", "--out", out])
    assert result.exit_code == 0, result.output
    assert "L1 rank" in result.output and "refine/" in result.output
    rows = list(csv.DictReader((out / "refine" / "ranked.csv").open()))
    assert 1 <= len(rows) <= 2 and {row["level1_rank"] for row in rows} <= {"1", "2"}
    assert len(list((out / "refine" / "res").glob("*.res"))) == 2
    report = _invoke(["report", out])
    assert report.exit_code == 0 and "final level (emt); L1 = first level (emt)" in report.output


def test_calc_config_and_options_reach_the_manifests(tmp_path, monkeypatch):
    (tmp_path / "slowcalc.py").write_text(SLOW_EMT)
    (tmp_path / "calc.toml").write_text("[refine]\ndelay = 0.0\n")
    monkeypatch.chdir(tmp_path)  # the factory module is found in the current directory
    args = [*FAST, "--calc", "slowcalc:factory", "--calc-opt", "delay=0", "--refine", "slowcalc:factory"]
    args += ["--calc-config", "calc.toml", "--refine-top", "1", "--out", "run"]
    assert _invoke(args).exit_code == 0
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["calculator_options"] == {"delay": "0"}
    assert json.loads((tmp_path / "run" / "refine" / "manifest.json").read_text())["calculator_options"] == {
        "delay": 0.0
    }
    changed = _invoke([*args, "--refine-opt", "delay=0.5"])
    assert changed.exit_code != 0 and "calculator_options.delay: was 0.0, now '0.5'" in changed.output


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--calculator", "emt", "--refine"], "--refine needs a second calculator"),
        (["--calculator", "emt", "--refine", "--refine-top", "3"], "--refine needs a second calculator"),
        (["--calculator", "emt", "--refine-top", "3"], "--refine-top needs --refine"),
        (["--calculator", "emt", "--refine-time-limit", "60"], "--refine-time-limit needs --refine"),
        (["--calculator", "emt", "--refine", "emt", "--refine-top", "0"], "--refine-top must be >= 1"),
        (["--calculator", "emt", "--refine", "espresso"], "apt-get install quantum-espresso"),
        (["--calculator", "emt", "--calc-opt", "device=cpu"], "unknown --calc-opt 'device' for calculator emt (known: none)"),
        (["--calculator", "emt", "--refine", "chgnet", "--refine-opt", "ecutwfc=30"], "known: device, model, threads"),
        (["--calculator", "emt", "--seeds", "file:{empty}"], "no readable structure"),
        (["--calculator", "emt", "--seeds", "file:{other}"], "are not AuCu: Cu.cif (Cu)"),
        (["--calculator", "nomodule_here:factory"], "cannot import calculator module"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, monkeypatch, extra, message):
    monkeypatch.setenv("UNIMAT_PW_COMMAND", "no-such-pw.x")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "other").mkdir()
    write(tmp_path / "other" / "Cu.cif", bulk("Cu", "fcc", a=3.6))
    extra = [e.format(empty=tmp_path / "empty", other=tmp_path / "other") for e in extra]
    result = _invoke([*FAST, *extra, "--out", tmp_path / "run"])
    assert result.exit_code != 0
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_kill_minus_nine_during_refine_then_rerun_loses_and_repeats_nothing(tmp_path):
    (tmp_path / "slowcalc.py").write_text(SLOW_EMT)
    out = tmp_path / "run"
    command = [sys.executable, "-m", "ase_unimat.cli.airss", *FAST, "-n", "6", "--calculator", "emt"]
    command += ["--refine", "slowcalc:factory", "--refine-opt", "delay=0.3", "--refine-top", "4", "--out", str(out)]
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    victim = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    records = out / "refine" / "records"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(records.glob("*.json"))) < 1:
        if victim.poll() is not None:
            pytest.fail(f"the search exited early ({victim.returncode}): {victim.stderr.read().decode()[-500:]}")
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    done_before = {p.stem for p in records.glob("*.json")}
    assert len(done_before) >= 1, "the run should have been killed during the refinements"

    finish = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert finish.returncode == 0, finish.stderr
    first_level_now = [line for line in finish.stderr.splitlines() if line.startswith("[") and "refine" not in line]
    refined_now = [line.split()[2] for line in finish.stderr.splitlines() if line.startswith("[refine")]
    assert first_level_now == []
    unique = len(list(csv.DictReader((out / "ranked.csv").open())))
    total = len(list(records.glob("*.json")))
    assert total == min(4, unique) > len(done_before)
    assert len(refined_now) == len(set(refined_now)) == total - len(done_before)
    assert not set(refined_now) & done_before
    assert not list(out.rglob("*.tmp"))
