"""Classifier-free guidance over the space group: how often samples have the requested symmetry, against w.

Run:  python -m bench guidance [--quick]
      (the model: UNIMAT_GUIDANCE_MODEL=path/to/model.pt, default models/unimat-mp-wide/model.pt;
      from Python: ``run(quick=False, out_dir=..., model="/tmp/gen_model/model.pt", k=2)``)

Every mp_20/val composition is sampled ``k`` times (the same seeds at every w) conditioned on the
space group of its known structure, at guidance w in {0, 1, 2, 4} (w = 0 is the network without the
condition, w = 1 the plain conditional network). Each sample's space group is found by spglib at
symprec 0.1 Angstrom (a tolerance that forgives the sampler's last bit of noise); reported per w are
the shares equal to the requested group, in its crystal system, and without symmetry (P1), and
the share whose cell alone (the point lattice's holohedry) has the requested crystal system.
Writes guidance.json and guidance.png.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

WEIGHTS = (0.0, 1.0, 2.0, 4.0)
VAL = "/work/data/mp20_val.h5"
DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "models" / "unimat-mp-wide" / "model.pt"


def measure(model, *, weights=WEIGHTS, k: int = 2, limit: int | None = None, sampler: str | None = None,
            steps: int | None = None, val: str = VAL) -> list[dict]:  # fmt: skip
    """Per guidance weight: shares of samples with the requested space group / crystal system / P1."""
    import h5py
    import numpy as np

    from ase_unimat.data.hdf5 import read_atoms
    from ase_unimat.generation import DEFAULT_SAMPLER, generate
    from bench._symmetry import crystal_system, lattice_crystal_system, spacegroup_number

    references = read_atoms(val)
    with h5py.File(val, "r") as h5:
        wanted = h5["properties/spacegroup"][:]
    pairs = [(ref, int(g)) for ref, g in zip(references, wanted, strict=True) if 1 <= g <= 230][:limit]
    sampler = sampler or DEFAULT_SAMPLER
    rows = []
    for w in weights:
        start = time.perf_counter()
        same = system = p1 = lattice = n = 0
        for i, (ref, group) in enumerate(pairs):
            counts = {s: ref.get_chemical_symbols().count(s) for s in set(ref.get_chemical_symbols())}
            for atoms in generate(counts, seeds=[1000 * i + j for j in range(k)], model=model, spacegroup=group,
                                  guidance=w, sampler=sampler, steps=steps, device="cpu"):  # fmt: skip
                got = spacegroup_number(atoms)
                same += got == group
                system += crystal_system(got) == crystal_system(group)
                p1 += got == 1
                lattice += lattice_crystal_system(atoms) == crystal_system(group)
                n += 1
        rows.append({"guidance": w, "n": n, "same_spacegroup": same / n, "same_crystal_system": system / n,
                     "p1": p1 / n, "lattice_system": lattice / n, "seconds": round(time.perf_counter() - start, 1)})  # fmt: skip
        print(rows[-1], flush=True)
    base = np.mean([g == 1 for _, g in pairs])
    rows.append({"reference_share_p1": float(base)})
    return rows


def plot(rows: list[dict], path: Path, *, title: str) -> None:
    """Shares against w."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = [r for r in rows if "guidance" in r]
    w = [r["guidance"] for r in cases]
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for key, label in (("same_spacegroup", "requested space group"), ("same_crystal_system", "its crystal system"),
                       ("p1", "P1 (no symmetry)"), ("lattice_system", "cell in its crystal system")):  # fmt: skip
        ax.plot(w, [100 * r[key] for r in cases], "o-", label=label)
    ax.set_xlabel("guidance w (0 = no condition, 1 = conditional)")
    ax.set_ylabel("% of samples (spglib, symprec 0.1)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(*, quick: bool, out_dir: Path, model: str | None = None, k: int | None = None) -> dict:
    """Share of samples with the requested space group against classifier-free guidance w (mp_20/val)."""
    import torch

    from ase_unimat.generation import load_model

    torch.set_num_threads(1)
    path = model or os.environ.get("UNIMAT_GUIDANCE_MODEL") or DEFAULT_MODEL
    if not Path(path).exists():
        return {"skipped": f"no space-group model at {path} (set UNIMAT_GUIDANCE_MODEL)"}
    net = load_model(path, device="cpu")
    if not net.spacegroup_conditioned:
        return {"skipped": f"{path} has no space-group condition to guide"}
    k = k or (1 if quick else 2)
    rows = measure(net, k=k, limit=40 if quick else None)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = "guidance_quick" if quick else "guidance"
    plot(rows, out_dir / f"{name}.png", title=f"space-group guidance, {Path(path).parent.name}, mp_20/val, k={k}")
    return {"model": str(path), "samples_per_composition": k, "symprec": 0.1, "cases": rows,
            "command": f"UNIMAT_GUIDANCE_MODEL={path} nice -n 5 python -m bench guidance" + (" --quick" if quick else "")}
