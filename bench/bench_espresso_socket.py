"""pw.x kept running over ASE's i-PI socket against one pw.x per step: relaxation time, steps, enthalpy.

One random 2-atom Si cell and one random AlAs cell (``random_structure``, rng seed 0, 20 Å³/atom:
near the LDA volumes, so that neither run is mostly a collapse from the covalent-radius volume) are
relaxed with :func:`~ase_unimat.search.relax.relax` (BFGS, fmax 0.05 eV/Å, variable cell as the
search does it, at most 150 steps) with ``EspressoForSearch`` at ``bench_refine``'s full QE settings
(ecutwfc 25 Ry, kspacing 0.06, smearing 0.02 Ry), once with ``socket=False`` (ASE's file I/O: a
fresh pw.x per step) and once with ``socket=True``. Reported per run: wall and CPU seconds (this
process and its pw.x children), steps, pw.x starts, final enthalpy per atom and volume.

The two relaxations follow different paths once their energies differ in the last digits (BFGS on a
random cell), so they may end in different minima; the seconds per step compare the two paths, and
the accuracy is checked on one structure: the socket run's final energy against a fresh file-I/O
pw.x on its final structure, and a socket pw.x started on that structure strained by
``MAX_STRAIN`` (the most one pw.x serves near convergence) and then given it, against file I/O:
energy, largest stress and force component differences.

``--quick``: the Si cell only, at ecutwfc 18 Ry, kspacing 0.1 and fmax 0.1 (``refine --quick``'s QE
settings). Run: ``nice -n 10 python -m bench espresso_socket`` (needs ``pw.x``; about 15 minutes on
2 busy cores, the quick run about 2).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import resource  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

SYSTEMS = (("Si", {"Si": 2}), ("AlAs", {"Al": 1, "As": 1}))
VOLUME_PER_ATOM = 20.0  # Å³ of the random cells
RNG_SEED = 0


def _settings(quick: bool) -> dict[str, Any]:
    return {
        "qe": {"ecutwfc": 18.0 if quick else 25.0, "kspacing": 0.1 if quick else 0.06, "smearing": 0.02},
        "fmax": 0.1 if quick else 0.05,
        "max_steps": 150,
        "optimizer": "BFGS",
        "volume_per_atom": VOLUME_PER_ATOM,
        "rng_seed": RNG_SEED,
    }


def _cpu_s() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _relax_once(atoms: Any, socket: bool, settings: dict[str, Any], folder: Path) -> tuple[dict[str, Any], Any]:
    from ase_unimat.search.calculators import get_calculator
    from ase_unimat.search.relax import RelaxSettings, relax

    calc = get_calculator("espresso", socket=socket, directory=folder, **settings["qe"])
    relax_settings = RelaxSettings(fmax=settings["fmax"], max_steps=settings["max_steps"],
                                   optimizer=settings["optimizer"])  # fmt: skip
    wall, cpu = time.perf_counter(), _cpu_s()
    result = relax(atoms, calc, relax_settings, id="socket" if socket else "fileio")
    wall, cpu = time.perf_counter() - wall, _cpu_s() - cpu
    evaluations = max(result.steps + 1, 1)  # irun yields once before its first step
    row = {
        "status": result.status, "reason": result.reason, "converged": result.converged, "steps": result.steps,
        "wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "cpu_s_per_evaluation": round(cpu / evaluations, 3),
        "pw_starts": calc.socket_starts if socket else evaluations,
        "enthalpy_per_atom_eV": result.enthalpy / len(result.atoms) if result.ok else None,
        "volume_per_atom_A3": round(result.volume / len(result.atoms), 3),
    }  # fmt: skip
    return row, result


def _accuracy(result: Any, settings: dict[str, Any], folder: Path) -> dict[str, Any]:
    """The socket run's final numbers, and a strained-start socket pw.x, against file I/O on the same structure."""
    import numpy as np

    from ase_unimat.search.calc_espresso_socket import MAX_STRAIN
    from ase_unimat.search.calculators import get_calculator

    final = result.atoms.copy()
    final.calc = get_calculator("espresso", socket=False, directory=folder / "check-fileio", **settings["qe"])
    energy, stress, forces = final.get_potential_energy(), final.get_stress(), final.get_forces()
    calc = get_calculator("espresso", socket=True, directory=folder / "check-socket", **settings["qe"])
    strained = final.copy()
    strained.set_cell(final.cell.array @ (np.eye(3) + MAX_STRAIN * np.diag([1.0, -0.5, 0.25])), scale_atoms=True)
    with calc.relaxation():
        strained.calc = calc
        strained.get_potential_energy()
        again = final.copy()
        again.calc = calc
        s_energy, s_stress, s_forces = again.get_potential_energy(), again.get_stress(), again.get_forces()
    return {
        "relaxed_energy_minus_fileio_meV": round(1000 * (result.energy - energy), 4),
        "strained_start": MAX_STRAIN,
        "energy_minus_fileio_meV": round(1000 * (s_energy - energy), 4),
        "max_stress_difference_eV_per_A3": float(np.abs(s_stress - stress).max()),
        "max_force_difference_eV_per_A": float(np.abs(s_forces - forces).max()),
    }


def run(*, quick: bool, out_dir: Path) -> dict[str, Any]:
    """pw.x over ASE's socket vs a pw.x per step: 2-atom Si and AlAs relaxations (time, steps, enthalpy)."""
    import numpy as np

    from ase_unimat.search.random_seed_options import RandomSeedOptions
    from ase_unimat.search.random_seeds import random_structure

    settings = _settings(quick)
    systems = SYSTEMS[:1] if quick else SYSTEMS
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-socket-") as tmp:
        for name, counts in systems:
            options = RandomSeedOptions(volume_per_atom=(VOLUME_PER_ATOM, VOLUME_PER_ATOM))
            atoms = random_structure(counts, options=options, rng=np.random.default_rng(RNG_SEED))
            fileio, _ = _relax_once(atoms, False, settings, Path(tmp) / f"{name}-fileio")
            socket, result = _relax_once(atoms, True, settings, Path(tmp) / f"{name}-socket")
            row = {
                "system": name, "start_cellpar": [round(float(x), 3) for x in atoms.cell.cellpar()],
                "fileio": fileio, "socket": socket,
                "speedup_wall": round(fileio["wall_s"] / socket["wall_s"], 2),
                "speedup_cpu_per_evaluation": round(fileio["cpu_s_per_evaluation"] / socket["cpu_s_per_evaluation"], 2),
                "accuracy": _accuracy(result, settings, Path(tmp) / f"{name}-check") if result.ok else None,
            }  # fmt: skip
            if fileio["enthalpy_per_atom_eV"] is not None and socket["enthalpy_per_atom_eV"] is not None:
                row["enthalpy_socket_minus_fileio_meV_per_atom"] = round(
                    1000 * (socket["enthalpy_per_atom_eV"] - fileio["enthalpy_per_atom_eV"]), 2
                )
            print(f"{name}: {row}", flush=True)
            rows.append(row)
    return {"settings": settings, "systems": rows}
