"""Project a structure onto the space group of a reference with the same atoms in the same frame.

A UniMat sample denoised from a template keeps the template's atom order and fractional frame (the
codec's slot order), but small residual noise breaks its symmetry: nearly every such seed is P1 at
``symprec = 0.1``, and a P1 seed relaxes in more optimizer steps than a symmetric one. Averaging the
sample over the template's symmetry operations keeps what the model changed in a symmetric way
(volume, cell shape, free internal coordinates) and drops the symmetry-breaking rest:

    x_j <- s_j + mean_k R_k u_i,   u_i = wrap(x_i - s_i),   where op k maps site i onto site j
    G   <- mean_k R_k^T G R_k       (G: metric tensor of the cell), then scaled to the old volume

with ``s`` the reference's sites (made exactly symmetric first). Both are linear projections onto
the structures invariant under the group, so a structure that already has the symmetry is returned
unchanged, and one whose atoms strayed far from their sites still comes out symmetric.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.geometry import cellpar_to_cell

from ase_unimat.core.symmetry_ops import SymmetryError, symmetry_operations

__all__ = ["SymmetryError", "project_onto_symmetry", "symmetrized_cell", "symmetry_operations"]


def project_onto_symmetry(atoms: Atoms, reference: Atoms, *, symprec: float = 0.01) -> Atoms:
    """``atoms`` averaged over the space group of ``reference`` (positions and cell metric).

    Parameters
    ----------
    atoms
        The structure to symmetrize; atom ``i`` corresponds to ``reference`` atom ``i`` and both use
        the same fractional frame (as a UniMat sample and the template it was denoised from do).
    reference
        Structure whose symmetry operations (found by spglib at ``symprec``) are imposed.
    symprec
        spglib tolerance for the reference's symmetry, in Angstrom.

    Returns
    -------
    A new ``Atoms`` (same numbers and order, same volume, ``info`` copied) with the reference's
    symmetry.
    """
    if len(atoms) != len(reference) or not np.array_equal(atoms.numbers, reference.numbers):
        raise SymmetryError(f"{atoms.get_chemical_formula()} does not correspond atom by atom to the reference "
                            f"{reference.get_chemical_formula()}")  # fmt: skip
    rotations, translations, perms = symmetry_operations(reference, symprec=symprec)
    site = reference.get_scaled_positions()  # (N, 3)
    site_shift = np.zeros_like(site)  # the reference's own sites made exactly symmetric (moves < symprec)
    moved = np.zeros_like(site)  # each atom's displacement from its site, averaged over the group
    displacement = atoms.get_scaled_positions() - site  # (N, 3), nearest image
    displacement -= np.round(displacement)
    for rot, trans, perm in zip(rotations, translations, perms, strict=True):
        delta = site @ rot.T + trans - site[perm]  # image of site i minus the site it lands on
        np.add.at(site_shift, perm, delta - np.round(delta))
        np.add.at(moved, perm, displacement @ rot.T)  # displacements turn with the rotation part only
    frac = np.mod(site + (site_shift + moved) / len(rotations), 1.0)

    out = Atoms(numbers=atoms.numbers, cell=symmetrized_cell(atoms.cell[:], rotations), scaled_positions=frac, pbc=True)
    out.info = dict(atoms.info)
    return out


def symmetrized_cell(cell: np.ndarray, rotations: np.ndarray) -> np.ndarray:
    """``cell`` (rows are vectors) with its metric averaged over ``rotations`` (fractional, (K, 3, 3)).

    ``G <- mean_k R_k^T G R_k``, rebuilt as a cell of the same volume in ASE's standard orientation
    (fractional coordinates keep their meaning).
    """
    cell = np.asarray(cell, dtype=np.float64)
    metric = cell @ cell.T  # (3, 3)
    metric = np.mean([rot.T @ metric @ rot for rot in rotations], axis=0)
    lengths = np.sqrt(np.diag(metric))
    cosines = [metric[1, 2] / (lengths[1] * lengths[2]), metric[0, 2] / (lengths[0] * lengths[2]),
               metric[0, 1] / (lengths[0] * lengths[1])]  # fmt: skip
    angles = np.degrees(np.arccos(np.clip(cosines, -1.0, 1.0)))
    out = cellpar_to_cell([*lengths, *angles])
    return out * (abs(np.linalg.det(cell)) / abs(np.linalg.det(out))) ** (1.0 / 3.0)  # keep the volume
