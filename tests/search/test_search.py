"""The Search loop: determinism, observers, failures, resume (also after kill -9), pools and Dask."""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT
from ase.io import read
from pymatgen.io.res import AirssProvider

from ase_unimat.core.formula import FormulaError
from ase_unimat.search.calculators import CalculatorError
from ase_unimat.search.search import Search, SearchError, formula_units_of, parse_formula_units
from ase_unimat.search.store import RunDirectoryError, RunStore

FAST = {"calculator": "emt", "seeds": "random", "fmax": 0.1, "max_steps": 40, "formula_units": (1, 2)}


class FailsOnFourAtoms(Calculator):
    """EMT, except that it raises for 4-atom cells (so some seeds of a CuAu 1-2 f.u. run fail)."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        if len(atoms) == 4:
            raise RuntimeError("no convergence for four atoms")
        inner = EMT()
        inner.calculate(atoms, ["energy", "forces", "stress"], all_changes)
        self.results = dict(inner.results)


@pytest.fixture(scope="module")
def serial_reference():
    """Summary of a serial in-memory run that the parallel runs must reproduce exactly."""
    search = Search("CuAu", n=3, run_seed=2, **FAST)
    search.run()
    return _summary(search.results)


def _summary(results):
    return sorted((r.id, r.status, round(r.enthalpy, 8) if r.ok else None) for r in results)


@pytest.mark.parametrize(("value", "expected"), [(2, (2, 2)), ((1, 4), (1, 4)), ("1-4", (1, 4)), ("3", (3, 3))])
def test_parse_formula_units(value, expected):
    assert parse_formula_units(value) == expected


@pytest.mark.parametrize("value", ["4-1", "0", "a-b", "1-", (0, 2), "1-100", "-2"])
def test_bad_formula_units(value):
    with pytest.raises(SearchError):
        parse_formula_units(value)


def test_formula_units_depend_only_on_run_seed_and_index():
    drawn = [formula_units_of(k, (1, 4), run_seed=5) for k in range(200)]
    assert drawn == [formula_units_of(k, (1, 4), run_seed=5) for k in range(200)]
    assert set(drawn) == {1, 2, 3, 4}
    assert drawn != [formula_units_of(k, (1, 4), run_seed=6) for k in range(200)]
    assert formula_units_of(17, (3, 3), run_seed=1) == 3


def test_run_in_memory_with_observers_and_irun():
    search = Search("CuAu", n=4, **FAST)
    seen, every_two = [], []
    search.attach(lambda: seen.append(search.last_result.id))
    search.attach(lambda tag: every_two.append((tag, len(search.results))), 2, "x")
    yielded = [r.id for r in search.irun()]
    assert yielded == seen and len(yielded) == 4
    assert every_two == [("x", 2), ("x", 4)]
    assert [int(i.rsplit("-", 1)[1]) for i in yielded] == [0, 1, 2, 3]
    ranking = search.rank()
    assert ranking.n_relaxed + len(ranking.failed) == 4
    assert all(r.source == "random" for r in search.results)


def test_same_run_seed_gives_the_same_search(serial_reference):
    again = Search("CuAu", n=3, run_seed=2, **FAST)
    again.run()
    other = Search("CuAu", n=1, run_seed=3, **FAST)
    other.run()
    assert _summary(again.results) == serial_reference
    assert _summary(other.results)[0] != serial_reference[0]


def test_failed_seeds_are_recorded_and_the_search_goes_on(tmp_path):
    search = Search("CuAu", n=6, out=tmp_path, **{**FAST, "calculator": FailsOnFourAtoms()})
    ranking = search.run()
    failed = [r for r in search.results if not r.ok]
    assert failed and len(failed) < 6
    assert all("RuntimeError: no convergence" in r.reason for r in failed)
    assert {r.id for r in ranking.failed} == {r.id for r in failed}
    store = RunStore(tmp_path)
    assert len(store.finished_ids()) == 6
    assert {p.stem for p in store.res_dir.glob("*.res")} == {r.id for r in search.results if r.ok}


def test_resume_adds_seeds_and_relaxes_nothing_twice(tmp_path, serial_reference):
    Search("CuAu", n=1, run_seed=2, out=tmp_path, **FAST).run()
    more = Search("CuAu", n=3, run_seed=2, out=tmp_path, **FAST)
    new = [r.seed_info["index"] for r in more.irun()]
    assert new == [1, 2]
    assert RunStore(tmp_path).finished_indices() == {0, 1, 2}
    again = Search("CuAu", n=3, run_seed=2, out=tmp_path, **FAST)
    assert list(again.irun()) == []
    ranking = again.rank()
    assert ranking.n_relaxed + len(ranking.failed) == 3
    assert (tmp_path / "ranked.csv").is_file() and any((tmp_path / "unique").glob("*.res"))
    # the resumed run equals one uninterrupted run
    assert _summary(RunStore(tmp_path).results()) == serial_reference


def test_incompatible_rerun_is_refused(tmp_path):
    Search("CuAu", n=1, out=tmp_path, **FAST).run()
    with pytest.raises(RunDirectoryError, match="pressure"):
        Search("CuAu", n=1, out=tmp_path, pressure=3.0, **FAST).run()
    with pytest.raises(RunDirectoryError, match="target"):
        Search("CuAg", n=1, out=tmp_path, **FAST).run()


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"formula": "Xx2O"}, FormulaError, "unknown element"),
        ({"formula": ""}, FormulaError, "empty formula"),
        ({"formula": "Cu(Au"}, FormulaError, "unbalanced"),
        ({"formula": "CuAu", "calculator": "nope"}, CalculatorError, "unknown calculator"),
        ({"formula": "CuAu", "pressure": float("nan")}, SearchError, "pressure"),
        ({"formula": "CuAu", "n": -1}, SearchError, "n must be"),
        ({"formula": "CuAu", "workers": 0}, SearchError, "workers"),
        ({"formula": "missing.cell"}, SearchError, "not found"),
        ({"formula": "CuAu", "unimat_strength": 0.0}, SearchError, "unimat strength"),
        ({"formula": "CuAu", "unimat_strength": ["a"]}, SearchError, "unimat strength"),
    ],
)
def test_bad_options_raise_clear_errors(kwargs, error, message):
    options = {**FAST, **kwargs}
    formula = options.pop("formula")
    with pytest.raises(error, match=message):
        Search(formula, **options)


def test_process_pool_gives_the_serial_results(tmp_path, serial_reference):
    pooled = Search("CuAu", n=3, run_seed=2, workers=2, out=tmp_path, **FAST)
    pooled.run()
    assert _summary(pooled.results) == serial_reference


@pytest.mark.parametrize("calculator", ["emt", EMT()], ids=["spec", "object"])
def test_any_executor_gives_the_serial_results(serial_reference, calculator):
    with cf.ThreadPoolExecutor(max_workers=2) as pool:
        threaded = Search("CuAu", n=3, run_seed=2, executor=pool, workers=2, **{**FAST, "calculator": calculator})
        threaded.run()
    if isinstance(calculator, str):
        assert _summary(threaded.results) == serial_reference
    else:  # one object shared by two threads is the user's choice; the loop still finishes every seed
        assert len(threaded.results) == 3


def test_dask_local_cluster_on_loopback(tmp_path, serial_reference):
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=False,
            protocol="tcp",
            host="127.0.0.1",
            scheduler_port=0,
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        assert client.scheduler.address.startswith("tcp://127.0.0.1:")
        search = Search("CuAu", n=3, run_seed=2, executor=client.get_executor(), workers=2, out=tmp_path, **FAST)
        search.run()
    assert _summary(search.results) == serial_reference
    assert len(RunStore(tmp_path).finished_ids()) == 3


@pytest.mark.slow
def test_kill_minus_nine_then_rerun_loses_and_repeats_nothing(tmp_path):
    out = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "ase_unimat.cli.airss",
        "--formula",
        "CuAu",
        "--formula-units",
        "2",
        "-n",
        "10",
        "--seeds",
        "random",
        "--calc",
        "emt",
        "--fmax",
        "0.05",
        "--out",
        str(out),
    ]
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    # cwd away from the checkout, so the installed package (with ase_unimat.cli) is what runs
    victim = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 90
    while time.time() < deadline and len(list((out / "records").glob("*.json"))) < 3:
        if victim.poll() is not None:
            pytest.fail(f"the search exited early ({victim.returncode}): {victim.stderr.read().decode()[-500:]}")
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    done_before = {p.stem for p in (out / "records").glob("*.json")}
    assert 3 <= len(done_before) < 10, "the run should have been killed mid-way"
    for path in (out / "res").glob("*.res"):  # every .res that exists is complete
        assert AirssProvider.from_file(str(path)).appearances == 1

    finish = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert finish.returncode == 0, finish.stderr
    relaxed_now = [line.split()[1] for line in finish.stderr.splitlines() if line.startswith("[")]
    assert len(relaxed_now) == len(set(relaxed_now)) == 10 - len(done_before)
    assert not set(relaxed_now) & done_before
    records = [json.loads(p.read_text()) for p in (out / "records").glob("*.json")]
    assert sorted(r["seed_info"]["index"] for r in records) == list(range(10))
    assert not list(out.rglob("*.tmp"))
    for record in records:
        if record["status"] == "ok":
            atoms = read(out / "res" / f"{record['id']}.res")
            assert atoms.get_potential_energy() == pytest.approx(record["enthalpy"], abs=1e-5)


def test_unimat_strength_reaches_the_seed_source_and_the_manifest():
    search = Search("CuAu", **{**FAST, "seeds": "unimat-template"}, unimat_strength=[0.2, 0.4])
    assert search.source.sources["unimat-template"].strengths == (0.2, 0.4)
    assert search.manifest()["unimat_strength"] == [0.2, 0.4]
    assert "unimat_strength" not in Search("CuAu", **FAST).manifest()  # old run folders still resume


def test_ordered_templates_reach_the_template_sources_and_the_manifest():
    plain = Search("CuAu", **{**FAST, "seeds": "template,unimat-template"}, ordered_templates=False)
    assert plain.source.sources["template"].ordered is False
    assert plain.source.sources["unimat-template"].template_options == {"ordered": False}
    assert plain.manifest()["ordered_templates"] is False
    default = Search("CuAu", **{**FAST, "seeds": "template"})
    assert default.source.sources["template"].ordered is True
    assert "ordered_templates" not in default.manifest()  # the default: old run folders still resume
