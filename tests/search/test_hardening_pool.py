"""Issue 16, item 3: a worker that dies fails only its seed; no worker outlives its parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from ase_unimat.search.pool import RelaxPool
from ase_unimat.search.relax import RelaxSettings, RelaxTask

SETTINGS = RelaxSettings(max_steps=10)


class DiesOn(EMT):
    """EMT that kills its own process for one element: by a signal or by ``os._exit``."""

    def __init__(self, symbol: str = "Al", how: str = "segv") -> None:
        super().__init__()
        self.symbol, self.how = symbol, how

    def calculate(self, atoms=None, *args, **kwargs):
        if self.symbol in atoms.get_chemical_symbols():
            if self.how == "segv":
                os.kill(os.getpid(), signal.SIGSEGV)
            os._exit(3)
        super().calculate(atoms, *args, **kwargs)


def _task(i: int, atoms, calculator) -> RelaxTask:
    return RelaxTask(id=f"t{i}", source="test", atoms=atoms, calculator=calculator, settings=SETTINGS)


@pytest.mark.parametrize(
    ("how", "reason"), [("segv", "worker died (signal 11)"), ("exit", "worker died (exit code 3)")]
)
def test_a_dying_worker_fails_only_its_seed_and_the_pool_goes_on(how, reason):
    cu, al = bulk("Cu", "fcc", a=3.7), bulk("Al", "fcc", a=4.1)
    calc = DiesOn("Al", how)
    tasks = [_task(i, a, calc) for i, a in enumerate([cu, al, cu.copy(), cu.copy(), al.copy()])]
    results = RelaxPool(workers=2).map(tasks)
    assert [r.id for r in results] == ["t0", "t1", "t2", "t3", "t4"]
    assert [r.ok for r in results] == [True, False, True, True, False]
    assert results[1].reason == reason and results[4].reason == reason


ORPHAN = textwrap.dedent(
    """
    import os, sys, time
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase_unimat.search.pool import RelaxPool
    from ase_unimat.search.relax import RelaxSettings, RelaxTask

    class Sleeps(EMT):
        def calculate(self, *args, **kwargs):
            open(os.path.join(sys.argv[1], f"worker-{os.getpid()}"), "w").close()
            time.sleep(120)

    if __name__ == "__main__":
        tasks = [RelaxTask(id=f"t{i}", source="t", atoms=bulk("Cu", "fcc", a=3.6), calculator=Sleeps(),
                           settings=RelaxSettings()) for i in range(2)]
        RelaxPool(workers=2).map(tasks)
    """
)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc")
def test_kill_9_of_the_parent_ends_its_workers(tmp_path):
    script = tmp_path / "orphan.py"
    script.write_text(ORPHAN)
    parent = subprocess.Popen([sys.executable, str(script), str(tmp_path)])
    try:
        deadline = time.monotonic() + 60
        while len(list(tmp_path.glob("worker-*"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        workers = [int(p.name.split("-")[1]) for p in tmp_path.glob("worker-*")]
        assert len(workers) == 2
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [pid for pid in workers if _alive(pid)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"workers {left} outlived their parent"
