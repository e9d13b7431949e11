"""EspressoForSearch with socket=True: one pw.x per relaxation over ASE's i-PI socket, and its faults.

The fake-pw.x tests (a shell script as ``$UNIMAT_PW_COMMAND``) run everywhere in well under a
second each; the real ones need Debian's ``pw.x`` and are marked slow like the other pw.x tests.
"""

from __future__ import annotations

import glob
import multiprocessing
import os
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk

from ase_unimat.search.calc_espresso_socket import SOCKET_PREFIX, cell_strain, pw_reason
from ase_unimat.search.calculators import CalculatorError, get_calculator
from ase_unimat.search.relax import RelaxSettings, relax

needs_pw = pytest.mark.skipif(
    shutil.which("pw.x") is None,
    reason="Quantum ESPRESSO pw.x not installed (apt-get install quantum-espresso quantum-espresso-data)",
)

#: Tiny QE settings: a 2-atom Si SCF in a fraction of a second.
TINY = {"ecutwfc": 12.0, "kspacing": 0.3, "smearing": 0.02, "socket": True}


def _pseudo_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "pseudo"
    folder.mkdir(exist_ok=True)
    (folder / "Si.pz-vbc.UPF").write_text("fake")
    return folder


def _fake_pw(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> Path:
    """A shell script standing in for pw.x (it never connects to the socket)."""
    script = tmp_path / "fake-pw.x"
    script.write_text(f"#!/bin/sh\necho $$ > {tmp_path}/pw.pid\n{body}\n")
    script.chmod(0o755)
    monkeypatch.setenv("UNIMAT_PW_COMMAND", str(script))
    return script


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _pw_processes_in(folder: Path) -> list[int]:
    """PIDs of live processes whose working directory is under ``folder`` (pw.x runs in its socket folder)."""
    pids = []
    for entry in glob.glob("/proc/[0-9]*"):
        try:
            cwd = os.readlink(f"{entry}/cwd")
        except OSError:
            continue
        if cwd.startswith(str(folder)) and _alive(int(entry.rsplit("/", 1)[1])):
            pids.append(int(entry.rsplit("/", 1)[1]))
    return pids


def _none_left_in(folder: Path, timeout: float = 10.0) -> bool:
    """No process runs in ``folder`` (pw.x, and the ``orted`` helper that Open MPI starts beside it, which
    exits a moment after pw.x) and no socket file of this process is left."""
    deadline = time.monotonic() + timeout
    while _pw_processes_in(folder) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not _pw_processes_in(folder) and not _our_socket_files()


def _our_socket_files() -> list[str]:
    return glob.glob(f"{SOCKET_PREFIX}unimat-{os.getpid()}-*")


def _wait_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not _alive(pid)


def test_cell_strain_is_the_largest_principal_strain():
    cell = np.array([[3.0, 0, 0], [0.5, 4.0, 0], [0, 0.3, 5.0]])
    assert cell_strain(cell, cell) == pytest.approx(0.0, abs=1e-12)
    assert cell_strain(cell, cell * 1.01) == pytest.approx(0.01)
    stretched = cell @ np.diag([1.0, 1.0, 0.97])
    assert cell_strain(cell, stretched) > 0.0


def test_pw_reason_reads_the_error_block_or_the_convergence_failure(tmp_path):
    out = tmp_path / "espresso.pwo"
    out.write_text(" %%%%%%%%\n     Error in routine scale_h (1):\n     Not enough space allocated\n %%%%%%%%\n")
    assert pw_reason(out) == "Error in routine scale_h (1): Not enough space allocated"
    out.write_text("     convergence NOT achieved after   1 iterations: stopping\n")
    assert pw_reason(out) == "convergence NOT achieved after 1 iterations: stopping"
    assert pw_reason(tmp_path / "missing.pwo") == ""


def test_the_socket_is_off_by_default(tmp_path, monkeypatch):
    _fake_pw(tmp_path, monkeypatch, "exit 0")
    calc = get_calculator("espresso", pseudo_dir=_pseudo_dir(tmp_path), directory=tmp_path / "pw")
    assert calc.socket is False  # measured no faster at production settings (bench espresso_socket)
    assert get_calculator("espresso", pseudo_dir=_pseudo_dir(tmp_path), socket="true").socket is True


def test_a_pw_x_that_exits_is_a_calculator_error_with_its_reason(tmp_path, monkeypatch):
    _fake_pw(tmp_path, monkeypatch, 'echo "     Error in routine readpp (1):"\necho "     file not found"\nexit 7')
    calc = get_calculator("espresso", pseudo_dir=_pseudo_dir(tmp_path), directory=tmp_path / "pw", **TINY)
    atoms = bulk("Si", "diamond", a=5.43)
    with calc.relaxation(), pytest.raises(CalculatorError, match="status 7.*Error in routine readpp.*file not found"):
        atoms.calc = calc
        atoms.get_potential_energy()
    assert not _our_socket_files()


def test_a_pw_x_that_never_answers_is_killed_at_the_socket_timeout(tmp_path, monkeypatch):
    _fake_pw(tmp_path, monkeypatch, "exec sleep 60")
    calc = get_calculator("espresso", pseudo_dir=_pseudo_dir(tmp_path), directory=tmp_path / "pw",
                          socket_timeout=1.0, **TINY)  # fmt: skip
    result = relax(bulk("Si", "diamond", a=5.43), calc, RelaxSettings(max_steps=3))
    assert result.status == "failed"
    assert "no answer from pw.x within 1 s" in result.reason, result.reason
    assert _wait_gone(int((tmp_path / "pw.pid").read_text()))
    assert not _our_socket_files()


def test_a_relaxation_that_times_out_leaves_no_pw_x(tmp_path, monkeypatch):
    _fake_pw(tmp_path, monkeypatch, "exec sleep 60")
    calc = get_calculator("espresso", pseudo_dir=_pseudo_dir(tmp_path), directory=tmp_path / "pw", **TINY)
    result = relax(bulk("Si", "diamond", a=5.43), calc, RelaxSettings(max_steps=3, time_limit=1.0))
    assert result.status == "failed" and result.reason.startswith("timeout"), result.reason
    assert _wait_gone(int((tmp_path / "pw.pid").read_text()))
    assert not _our_socket_files()


def _relax_forever(pseudo_dir: str | None, directory: str, qe: dict) -> None:  # runs in a spawned process
    calc = get_calculator("espresso", directory=directory, **({"pseudo_dir": pseudo_dir} if pseudo_dir else {}), **qe)
    relax(bulk("Si", "diamond", a=5.43), calc, RelaxSettings(max_steps=3))


def test_a_killed_worker_leaves_no_pw_x(tmp_path, monkeypatch):
    _fake_pw(tmp_path, monkeypatch, "exec sleep 60")
    worker = multiprocessing.get_context("spawn").Process(
        target=_relax_forever, args=(str(_pseudo_dir(tmp_path)), str(tmp_path / "pw"), TINY)
    )
    worker.start()
    pid_file = tmp_path / "pw.pid"
    deadline = time.monotonic() + 60.0
    while not (pid_file.exists() and pid_file.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)
    pw_pid = int(pid_file.read_text())
    assert _alive(pw_pid)
    os.kill(worker.pid, signal.SIGKILL)
    worker.join(10.0)
    assert _wait_gone(pw_pid), "pw.x outlived its killed worker"


@pytest.mark.slow
@needs_pw
def test_socket_relaxation_matches_file_io(tmp_path):
    atoms = bulk("Si", "diamond", a=5.6)
    atoms.rattle(0.05, seed=1)
    settings = RelaxSettings(fmax=0.05, max_steps=60, optimizer="BFGS")
    qe = {"ecutwfc": 25.0, "kspacing": 0.3}  # at 20 Ry a G-shell at the cut-off already splits the two by 1 meV
    socket_calc = get_calculator("espresso", directory=tmp_path / "socket", socket=True, **qe)
    fileio_calc = get_calculator("espresso", directory=tmp_path / "fileio", socket=False, **qe)
    by_socket = relax(atoms, socket_calc, settings, id="Si2-socket")
    by_files = relax(atoms, fileio_calc, settings, id="Si2-fileio")
    assert by_socket.status == "ok" and by_socket.converged, by_socket.reason
    assert by_files.status == "ok" and by_files.converged, by_files.reason
    assert socket_calc.socket_starts >= 1
    assert abs(by_socket.energy - by_files.energy) < 2e-3  # eV: two relaxations to the same minimum
    assert by_socket.volume == pytest.approx(by_files.volume, rel=0.01)
    # the socket's last energy against a fresh pw.x on the same structure
    final = by_socket.atoms.copy()
    final.calc = fileio_calc
    assert abs(final.get_potential_energy() - by_socket.energy) < 1e-3
    assert _none_left_in(tmp_path)


@pytest.mark.slow
@needs_pw
def test_socket_stress_after_a_cell_change_matches_file_io(tmp_path):
    atoms = bulk("Si", "diamond", a=5.43)
    atoms.rattle(0.03, seed=2)
    strained = atoms.copy()
    strained.set_cell(atoms.cell.array @ (np.eye(3) + np.diag([0.002, -0.001, 0.0005])), scale_atoms=True)
    qe = {"ecutwfc": 25.0, "kspacing": 0.3}  # the plane-wave drift grows as the cut-off falls
    calc = get_calculator("espresso", directory=tmp_path / "socket", socket=True, **qe)
    with calc.relaxation():  # pw.x starts on the strained cell, then gets the other one
        strained.calc = calc
        strained.get_potential_energy()
        atoms.calc = calc
        energy, forces, stress = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
        assert calc.socket_starts == 1
    reference = atoms.copy()
    reference.calc = get_calculator("espresso", directory=tmp_path / "fileio", socket=False, **qe)
    assert abs(reference.get_potential_energy() - energy) < 1e-3
    assert np.abs(reference.get_stress() - stress).max() < 1e-4
    assert np.abs(reference.get_forces() - forces).max() < 1e-3
    assert _none_left_in(tmp_path)


@pytest.mark.slow
@needs_pw
def test_an_unconverged_scf_fails_the_relaxation_with_the_reason(tmp_path):
    calc = get_calculator("espresso", directory=tmp_path / "socket",
                          input_data={"electrons": {"electron_maxstep": 1}}, **TINY)  # fmt: skip
    result = relax(bulk("Si", "diamond", a=5.43), calc, RelaxSettings(max_steps=3))
    assert result.status == "failed"
    assert "convergence NOT achieved" in result.reason, result.reason
    assert _none_left_in(tmp_path)


@pytest.mark.slow
@needs_pw
def test_a_real_pw_x_is_stopped_when_the_relaxation_times_out(tmp_path):
    calc = get_calculator("espresso", directory=tmp_path / "socket", socket=True, ecutwfc=30.0, kspacing=0.1)
    result = relax(bulk("Si", "diamond", a=5.43), calc, RelaxSettings(max_steps=10, time_limit=0.5))
    assert result.status == "failed" and result.reason.startswith("timeout"), result.reason
    assert _none_left_in(tmp_path)


@pytest.mark.slow
@needs_pw
def test_a_killed_worker_leaves_no_real_pw_x(tmp_path):
    qe = {"ecutwfc": 30.0, "kspacing": 0.1, "socket": True}  # a first SCF of several seconds
    worker = multiprocessing.get_context("spawn").Process(target=_relax_forever, args=(None, str(tmp_path / "pw"), qe))
    worker.start()
    deadline = time.monotonic() + 60.0
    while not _pw_processes_in(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _pw_processes_in(tmp_path), "pw.x did not start"
    os.kill(worker.pid, signal.SIGKILL)
    worker.join(10.0)
    assert _none_left_in(tmp_path), "pw.x outlived its killed worker"
