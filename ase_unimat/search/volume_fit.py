"""Per-element volumes fitted to a UniMat HDF5 dataset: the table behind random seeds' target volume.

Model: a structure's volume per atom is the composition-weighted sum of per-element volumes,
``V / N = sum_e x_e v_e`` (``x_e``: atom fraction of element ``e``). The ``v_e`` are fitted in log
space, ``log(sum_e x_e v_e) - log(V / N)``, with a robust (soft-L1, scale 0.1) loss so that the
few porous or molecular cells of a dataset do not pull the table, and ``v_e = exp(p_e) > 0``.

Regenerate the shipped table (``ase_unimat/search/element_volumes.json``) from the converted
training set of the shipped model::

    python -c "from ase_unimat.search.volume_fit import fit_element_volumes, write_table; \\
        write_table(fit_element_volumes('/work/data/mp_wide.h5'), \\
        'ase_unimat/search/element_volumes.json', source='mp_wide.h5 (models/unimat-mp-wide)')"
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from ase.data import chemical_symbols
from scipy import sparse
from scipy.optimize import least_squares

from ase_unimat.core.periodic_table import CELL_TO_Z, MAX_Z
from ase_unimat.core.representation import lattices_to_cells
from ase_unimat.data.hdf5 import open_file

#: Soft-L1 scale of the log-volume residuals (0.1: about 10 % before a structure counts as an outlier).
F_SCALE = 0.1


def dataset_volumes(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """(element counts (N, MAX_Z) by atomic number - 1, cell volumes (N,) in A^3) of an HDF5 dataset."""
    with open_file(path) as h5:
        grid = np.asarray(h5["composition"][:], dtype=float)  # (N, 9, 18)
        lattice = np.asarray(h5["lattice"][:], dtype=float)  # (N, 6)
    z = CELL_TO_Z.reshape(-1)  # (162,), 0 where no element
    counts = np.zeros((len(grid), MAX_Z))
    flat = grid.reshape(len(grid), -1)
    for cell in np.flatnonzero(z > 0):
        counts[:, z[cell] - 1] += flat[:, cell]
    volumes = np.abs(np.linalg.det(lattices_to_cells(lattice)))  # (N,)
    return counts, volumes


def fit_element_volumes(path: str | os.PathLike, *, f_scale: float = F_SCALE) -> dict[str, float]:
    """Fit ``{symbol: volume per atom (A^3)}`` to the structures of the HDF5 dataset ``path``.

    Only elements present in the dataset get a value. See the module docstring for the model.
    """
    counts, volumes = dataset_volumes(path)
    keep = (volumes > 0) & (counts.sum(1) > 0)
    counts, volumes = counts[keep], volumes[keep]
    natoms = counts.sum(1)
    used = np.flatnonzero(counts.sum(0) > 0)  # element columns present
    fractions = sparse.csr_matrix(counts[:, used] / natoms[:, None])  # (N, E)
    target = np.log(volumes / natoms)  # (N,)

    def residuals(p: np.ndarray) -> np.ndarray:
        return np.log(fractions @ np.exp(p)) - target

    def jacobian(p: np.ndarray) -> sparse.csr_matrix:
        w = np.exp(p)
        return sparse.csr_matrix(fractions.multiply(w[None, :]).multiply((1.0 / (fractions @ w))[:, None]))

    start = np.full(len(used), float(np.median(target)))
    fit = least_squares(residuals, start, jac=jacobian, loss="soft_l1", f_scale=f_scale, tr_solver="lsmr")
    return {chemical_symbols[int(k) + 1]: round(float(np.exp(p)), 3) for k, p in zip(used, fit.x, strict=True)}


def write_table(volumes: dict[str, float], out: str | os.PathLike, *, source: str) -> Path:
    """Write a fitted table as JSON (``{"source", "model", "volumes"}``) and return its path."""
    out = Path(out)
    doc = {
        "source": source,
        "model": "V/N = sum_e x_e v_e, soft-L1 fit of log volume (ase_unimat.search.volume_fit)",
        "volumes": dict(sorted(volumes.items(), key=lambda kv: chemical_symbols.index(kv[0]))),
    }
    out.write_text(json.dumps(doc, indent=1) + "\n")
    return out
