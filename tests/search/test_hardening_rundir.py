"""Issue 16, items 1 and 2: a run directory is owned (never delete what it did not write) and locked."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from ase_unimat.search.rank import rank, write_unique_res
from ase_unimat.search.relax import RelaxSettings, relax
from ase_unimat.search.store import RunDirectoryError, RunStore

MANIFEST = {"target": {"counts": {"Cu": 1}}, "seeds": "random", "run_seed": 0, "settings": {"pressure": 0.0}, "n": 4}


def test_a_foreign_nonempty_directory_is_refused_and_kept(tmp_path):
    (tmp_path / "unique").mkdir()
    mine = tmp_path / "unique" / "my_structure.res"
    mine.write_text("TITL mine\n")
    hidden = tmp_path / ".notes.tmp"
    hidden.write_text("keep")
    with pytest.raises(RunDirectoryError, match="not an unimat-airss run directory"):
        RunStore(tmp_path).open(MANIFEST)
    assert mine.read_text() == "TITL mine\n" and hidden.read_text() == "keep"
    assert not (tmp_path / "manifest.json").exists()


def test_an_empty_directory_is_accepted(tmp_path):
    store = RunStore(tmp_path)
    store.open(MANIFEST)
    store.close()
    assert (tmp_path / "manifest.json").is_file()


def test_leftover_cleanup_removes_only_its_own_temporary_names(tmp_path):
    store = RunStore(tmp_path)
    store.open(MANIFEST)
    store.close()
    own = store.res_dir / ".Cu-random-000003.res.ab12cd_3.tmp"
    own.write_text("TITL half")
    foreign = [tmp_path / ".user.tmp", store.res_dir / ".x.tmp", store.records_dir / ".notes.tmp"]
    for path in foreign:
        path.write_text("user")
    store.open(MANIFEST)
    store.close()
    assert not own.exists()
    assert all(path.read_text() == "user" for path in foreign)


def test_unique_keeps_files_it_did_not_write(tmp_path):
    atoms = bulk("Cu", "fcc", a=3.6)
    result = relax(atoms, EMT(), RelaxSettings(), id="Cu-random-000000", source="random")
    folder = tmp_path / "unique"
    folder.mkdir()
    (folder / "mine.res").write_text("TITL mine\n")
    (folder / "Cu-random-000009.res").write_text("TITL stale\n")  # an older ranking's file of this run
    write_unique_res(rank([result]), folder, owned={"Cu-random-000000", "Cu-random-000009"})
    assert (folder / "mine.res").read_text() == "TITL mine\n"
    assert not (folder / "Cu-random-000009.res").exists()
    assert (folder / "Cu-random-000000.res").is_file()


HOLDER = textwrap.dedent(
    """
    import sys, time
    from ase_unimat.search.store import RunStore
    store = RunStore(sys.argv[1])
    store.open({"seeds": "random", "n": 1})
    print("locked", flush=True)
    time.sleep(60)
    """
)


def test_a_second_process_is_refused_with_the_holders_pid_and_a_killed_holder_frees_it(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunDirectoryError, match=f"in use by process {holder.pid}"):
            RunStore(tmp_path).open({"seeds": "random", "n": 1})
    finally:
        holder.kill()
        holder.wait()
    store = RunStore(tmp_path)
    store.open({"seeds": "random", "n": 1})  # a killed holder leaves no stuck lock
    store.close()


def test_the_same_process_may_reopen(tmp_path):
    first = RunStore(tmp_path)
    first.open(MANIFEST)
    second = RunStore(tmp_path)
    second.open(MANIFEST)
    second.close()
    first.close()
    assert os.path.isfile(tmp_path / "manifest.json")


def test_ranking_a_run_that_another_process_holds_is_refused(tmp_path):
    from ase.calculators.emt import EMT

    from ase_unimat.search import Search

    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunDirectoryError, match=f"in use by process {holder.pid}"):
            Search("Cu", calculator=EMT(), seeds="random", n=1, out=tmp_path).rank()  # no output rewritten
    finally:
        holder.kill()
        holder.wait()
    assert not (tmp_path / "ranked.csv").exists()


def test_discard_empty_run_removes_only_scaffolding(tmp_path):
    from ase_unimat.search.store import discard_empty_run

    run = tmp_path / "run"
    RunStore(run).open({"n": 1})
    RunStore(run / "refine").open({"n": 1})  # a second level's scaffolding too
    assert discard_empty_run(run) and not run.exists()

    kept = tmp_path / "kept"
    store = RunStore(kept)
    store.open({"n": 1})
    (kept / "notes.txt").write_text("mine")
    assert not discard_empty_run(kept) and (kept / "notes.txt").is_file() and (kept / "manifest.json").is_file()
    store.close()


def test_a_composition_no_source_can_build_leaves_no_run_directory(tmp_path):
    from ase_unimat.search.search import Search
    from ase_unimat.search.seeds import SeedSourceError

    out = tmp_path / "run"
    # The bundled model never saw radon; an EMT object skips the calculator's element check.
    search = Search({"Rn": 2}, calculator=EMT(), seeds="unimat", n=1, formula_units=1, out=out)
    with pytest.raises(SeedSourceError):
        search.run()
    assert not out.exists()


def test_a_model_name_that_does_not_exist_is_refused_before_the_run_directory(tmp_path):
    from ase_unimat.search.search import Search
    from ase_unimat.search.search_options import SearchError

    out = tmp_path / "run"
    with pytest.raises(SearchError, match="model 'no-such-model' not found"):
        Search("Cu", calculator="emt", seeds="unimat", model="no-such-model", out=out)
    assert not out.exists()
