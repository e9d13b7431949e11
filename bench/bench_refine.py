"""Two-level search against one level, with real DFT: DFT relaxations until the DFT ground state is found.

For each small composition whose ground state is known (elements that Debian's
``quantum-espresso-data`` pseudopotentials cover, LDA norm-conserving ``*.pz-*vbc/bhs`` files):

1. **Reference.** The known structure is relaxed with Quantum ESPRESSO under the benchmark's QE
   settings; its enthalpy per atom is the DFT ground state ``H_ref``.
2. **Two levels.** ``Search(calculator="chgnet", refine="espresso", refine_top=K)`` on ``N`` random
   seeds: CHGNet relaxes all, duplicates are united, QE relaxes the best ``K`` unique ones in rank
   order. Count: the position of the first QE relaxation that reaches the ground state.
3. **One level.** ``Search(calculator="espresso")`` on the *same* seeds (same source, run seed and
   order), up to ``M`` of them. Count: the first seed whose QE relaxation reaches it.

"Reaches the ground state": enthalpy per atom within ``tolerance`` of ``H_ref`` (10 meV/atom; 30 with
the coarse ``--quick`` k-points).
A level that never reaches it within its budget is reported as censored (``found: false``); its
count is then a lower bound (``K`` or ``M``). Wall time: CHGNet screen plus QE relaxations up to
the hit (two levels), QE relaxations up to the hit (one level); the totals of every relaxation run
are reported beside them.

Run: ``nice -n 5 python -m bench refine`` (``--quick``: fewer seeds, coarser QE). It needs
``pw.x`` (``apt-get install quantum-espresso quantum-espresso-data``) and CHGNet. Targets: two
levels reach the ground state with <= 2 QE relaxations on average, >= 3x fewer than one level, in
no more total wall time. Writes ``refine[_quick].json`` and ``refine[_quick].png``; partial results
are kept in ``refine[_quick].partial.json`` after each composition.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

#: (name, formula counts, formula units per cell, ground-state builder name) of each composition.
SYSTEMS = (
    ("Si", {"Si": 1}, 2, "diamond Si (Fd-3m)"),
    ("AlAs", {"Al": 1, "As": 1}, 1, "zincblende AlAs (F-43m)"),
    ("MgB2", {"Mg": 1, "B": 2}, 1, "AlB2-type MgB2 (P6/mmm)"),
    ("Mg2Si", {"Mg": 2, "Si": 1}, 1, "antifluorite Mg2Si (Fm-3m)"),
)

TOLERANCE = 0.010  # eV/atom above the reference that still counts as the ground state


def ground_state(name: str) -> Any:
    """The known ground-state structure of ``name`` at roughly its experimental lattice constants."""
    from ase.build import bulk
    from ase.spacegroup import crystal

    if name == "Si":
        return bulk("Si", "diamond", a=5.43)
    if name == "AlAs":
        return bulk("AlAs", "zincblende", a=5.66)
    if name == "MgB2":
        return crystal(
            ["Mg", "B"], [(0, 0, 0), (1 / 3, 2 / 3, 0.5)], spacegroup=191, cellpar=[3.09, 3.09, 3.52, 90, 90, 120]
        )
    if name == "Mg2Si":
        cell = [6.35, 6.35, 6.35, 90, 90, 90]
        return crystal(["Si", "Mg"], [(0, 0, 0), (0.25, 0.25, 0.25)], spacegroup=225, cellpar=cell, primitive_cell=True)
    raise ValueError(f"no ground state for {name}")


def _settings(quick: bool) -> dict[str, Any]:
    return {
        # kspacing is ASE's (1/Å without 2π, as CASTEP). Measured on Si2 at 18 Ry: 0.4 is Gamma only (reference
        # 7 eV/atom too high); at 0.15 (3x3x3) a CHGNet P2/m cell came out 0.27 eV/atom *below* diamond; at
        # 0.08 diamond is 0.51 eV/atom below it, as with 6x6x6 (0.50). --quick: 0.1 and a looser tolerance.
        "qe": {"ecutwfc": 18.0 if quick else 25.0, "kspacing": 0.1 if quick else 0.06, "smearing": 0.02},
        "tolerance_eV_per_atom": 0.03 if quick else TOLERANCE,
        "n_seeds": 10 if quick else 30,
        "top": 2 if quick else 5,
        "one_level_max": 3 if quick else 10,
        "fmax": 0.1 if quick else 0.05,
        "max_steps": 50 if quick else 150,
        "optimizer": "BFGS",
        "time_limit": 300.0 if quick else 900.0,
        "run_seed": 0,
    }


def _hit(results: list[Any], reference: float, tolerance: float = TOLERANCE) -> int | None:
    """1-based position of the first result within ``tolerance`` eV/atom of the reference (None: none)."""
    for position, result in enumerate(results, start=1):
        if result.ok and result.enthalpy / len(result.atoms) <= reference + tolerance:
            return position
    return None


def one_system(name: str, counts: dict[str, int], units: int, settings: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Reference, two-level and one-level runs of one composition."""
    from ase_unimat.search.calculators import get_calculator
    from ase_unimat.search.relax import RelaxSettings, relax
    from ase_unimat.search.search import Search

    qe = settings["qe"]
    relax_settings = RelaxSettings(
        fmax=settings["fmax"], max_steps=settings["max_steps"], optimizer=settings["optimizer"]
    )
    reference = relax(ground_state(name), get_calculator("espresso", **qe), relax_settings, id=f"{name}-reference")
    h_ref = reference.enthalpy / len(reference.atoms)
    _say(f"{name}: reference {reference.status} {reference.steps} steps {reference.wall_time:.0f} s H/atom {h_ref:.4f}")
    common = {"seeds": "random", "formula_units": units, "fmax": settings["fmax"], "max_steps": settings["max_steps"],
              "optimizer": settings["optimizer"], "time_limit": settings["time_limit"], "run_seed": settings["run_seed"]}  # fmt: skip

    start = time.perf_counter()
    two = Search(counts, calculator="chgnet", n=settings["n_seeds"], out=folder / f"{name}-two", refine="espresso",
                 refine_options=qe, refine_top=settings["top"], **common)  # fmt: skip
    screen_wall = None
    for result in two.irun():
        if result.seed_info.get("level") == 2:
            screen_wall = screen_wall or time.perf_counter() - start - result.wall_time
            _say(f"{name}: two-level QE {_line(result, h_ref)}")
    two.run()
    two_wall = time.perf_counter() - start
    dft_two = list(two.refined)  # in refinement (first-level rank) order, serial
    hit_two = _hit(dft_two, h_ref, settings["tolerance_eV_per_atom"])

    start = time.perf_counter()
    one = Search(counts, calculator="espresso", calculator_options=qe, n=settings["one_level_max"], **common)
    dft_one = []
    for result in one.irun():
        dft_one.append(result)
        _say(f"{name}: one-level QE {_line(result, h_ref)}")
        if _hit(dft_one, h_ref, settings["tolerance_eV_per_atom"]) is not None:
            break
    one_wall = time.perf_counter() - start
    hit_one = _hit(dft_one, h_ref, settings["tolerance_eV_per_atom"])

    def summary(results: list[Any]) -> list[dict[str, Any]]:
        return [{"id": r.id, "status": r.status, "reason": r.reason, "steps": r.steps, "wall_s": round(r.wall_time, 2),
                 "enthalpy_per_atom_above_ref_eV": None if not r.ok else round(r.enthalpy / len(r.atoms) - h_ref, 5),
                 "spacegroup": r.spacegroup} for r in results]  # fmt: skip

    screen_wall = screen_wall if screen_wall is not None else two_wall
    lowest = min((r.enthalpy / len(r.atoms) - h_ref for r in dft_two + dft_one if r.ok), default=None)
    return {
        "name": name,
        "atoms_per_cell": sum(counts.values()) * units,
        "ground_state": next(s[3] for s in SYSTEMS if s[0] == name),
        "reference": {
            "enthalpy_per_atom_eV": h_ref,
            "status": reference.status,
            "steps": reference.steps,
            "wall_s": round(reference.wall_time, 2),
            "spacegroup": reference.spacegroup,
        },  # fmt: skip
        # A structure well below the reference means these QE settings do not reproduce the known
        # ground state: then any "hit" is trivial, and the composition says nothing about the search.
        "lowest_found_minus_reference_eV_per_atom": lowest,
        "reference_is_lowest": lowest is None or lowest >= -settings["tolerance_eV_per_atom"],
        "two_level": {
            "found": hit_two is not None,
            "dft_relaxations_to_ground_state": hit_two if hit_two is not None else len(dft_two),
            "wall_s_to_ground_state": round(
                screen_wall + sum(r.wall_time for r in dft_two[: hit_two or len(dft_two)]), 2
            ),
            "screen_wall_s": round(screen_wall, 2),
            "wall_s_total": round(two_wall, 2),
            "dft": summary(dft_two),
        },
        "one_level": {
            "found": hit_one is not None,
            "dft_relaxations_to_ground_state": hit_one if hit_one is not None else len(dft_one),
            "wall_s_to_ground_state": round(one_wall, 2),
            "dft": summary(dft_one),
        },
    }


def _say(text: str) -> None:
    import sys

    print(text, file=sys.stderr, flush=True)


def _line(result: Any, h_ref: float) -> str:
    above = f"{result.enthalpy / len(result.atoms) - h_ref:+.4f} eV/atom" if result.ok else result.reason
    return f"{result.id} {result.status} {result.steps} steps {result.wall_time:.0f} s {above}"


def run(*, quick: bool, out_dir: Path) -> dict:
    """Every composition of :data:`SYSTEMS`; partial results are written after each."""
    from ase_unimat.search.calculators import check_calculator_spec

    settings = _settings(quick)
    check_calculator_spec("espresso", symbols=sorted({s for _, c, _, _ in SYSTEMS for s in c}), options=settings["qe"])
    check_calculator_spec("chgnet")
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = "refine_quick" if quick else "refine"
    systems = []
    with tempfile.TemporaryDirectory(prefix="bench-refine-") as tmp:
        for name, counts, units, _ in SYSTEMS:
            systems.append(one_system(name, counts, units, settings, Path(tmp)))
            partial = {"settings": settings, "systems": systems, "complete": False}
            (out_dir / f"{stem}.partial.json").write_text(json.dumps(partial, indent=1, default=str) + "\n")
    result = {"settings": settings, "systems": systems, **_verdict(systems)}
    _plot(systems, out_dir / f"{stem}.png")
    (out_dir / f"{stem}.partial.json").unlink(missing_ok=True)
    return result


def _verdict(systems: list[dict[str, Any]]) -> dict[str, Any]:
    two = [s["two_level"]["dft_relaxations_to_ground_state"] for s in systems]
    one = [s["one_level"]["dft_relaxations_to_ground_state"] for s in systems]
    two_wall = sum(s["two_level"]["wall_s_to_ground_state"] for s in systems)
    one_wall = sum(s["one_level"]["wall_s_to_ground_state"] for s in systems)
    mean_two, mean_one = sum(two) / len(two), sum(one) / len(one)
    return {
        "mean_dft_relaxations_two_level": mean_two,
        "mean_dft_relaxations_one_level": mean_one,
        "all_found_two_level": all(s["two_level"]["found"] for s in systems),
        "all_found_one_level": all(s["one_level"]["found"] for s in systems),
        "one_level_counts_are_lower_bounds": not all(s["one_level"]["found"] for s in systems),
        "ratio_one_over_two": mean_one / mean_two,
        "wall_s_two_level": round(two_wall, 1),
        "wall_s_one_level": round(one_wall, 1),
        "target_mean_two_level_le_2": mean_two <= 2,
        "target_ratio_ge_3": mean_one / mean_two >= 3,
        "target_wall_not_more": two_wall <= one_wall,
    }


def _plot(systems: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = [s["name"] for s in systems]
    x = np.arange(len(names))
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, key, label in ((axes[0], "dft_relaxations_to_ground_state", "QE relaxations to ground state"),
                           (axes[1], "wall_s_to_ground_state", "wall time to ground state (s)")):  # fmt: skip
        for offset, level, text in ((-0.2, "two_level", "CHGNet screen + QE top-K"), (0.2, "one_level", "QE on seeds")):
            values = [s[level][key] for s in systems]
            bars = ax.bar(x + offset, values, 0.4, label=text)
            for bar, s in zip(bars, systems, strict=True):
                if not s[level]["found"]:
                    ax.annotate(
                        "not found", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", fontsize=7
                    )
        ax.set_xticks(x, names)
        ax.set_ylabel(label)
    axes[0].legend(fontsize=8)
    fig.suptitle("Two-level search (CHGNet -> Quantum ESPRESSO) vs QE alone, same random seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":  # prints only; `python -m bench refine` writes bench/results/refine.json
    print(json.dumps(run(quick=True, out_dir=Path(tempfile.mkdtemp())), indent=1, default=str))
