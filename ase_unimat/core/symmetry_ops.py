"""Space-group operations of a structure in its own fractional frame, with the atom map of each.

The symmetry imposed on UniMat samples (:mod:`ase_unimat.model.symmetry_constraint` during
sampling, :mod:`ase_unimat.search.symmetry` on finished samples) and the orbits of ordered
templates come from :func:`symmetry_operations` (spglib).
"""

from __future__ import annotations

import numpy as np
import spglib
from ase import Atoms


class SymmetryError(ValueError):
    """The two structures do not correspond atom by atom, or the reference's symmetry is unusable."""


def symmetry_operations(reference: Atoms, *, symprec: float = 0.01) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Space-group operations of ``reference`` in its own fractional frame and the atom map of each.

    Returns
    -------
    rotations : ndarray, int, shape (K, 3, 3)
    translations : ndarray, shape (K, 3)
    permutations : ndarray, int, shape (K, N); operation ``k`` maps atom ``i`` onto ``permutations[k, i]``
    """

    frac = reference.get_scaled_positions()  # (N, 3)
    numbers = reference.numbers
    found = spglib.get_symmetry((reference.cell[:], frac, numbers), symprec=symprec)
    if found is None:
        raise SymmetryError("spglib found no symmetry operations for the reference")
    rotations, translations = np.asarray(found["rotations"]), np.asarray(found["translations"])
    cell = np.asarray(reference.cell[:])
    same = numbers[:, None] == numbers[None, :]  # (N, N)
    tolerance = max(10.0 * symprec, 1e-3)  # Angstrom
    perms = []
    for rot, shift in zip(rotations, translations, strict=True):
        image = frac @ rot.T + shift  # (N, 3)
        delta = image[:, None, :] - frac[None, :, :]  # (N, N, 3)
        delta -= np.round(delta)
        dist = np.where(same, np.linalg.norm(delta @ cell, axis=-1), np.inf)  # (N, N)
        perm = np.argmin(dist, axis=1)
        if np.any(dist[np.arange(len(frac)), perm] > tolerance) or len(set(perm.tolist())) != len(perm):
            raise SymmetryError("a symmetry operation of the reference does not map its atoms onto each other")
        perms.append(perm)
    return rotations, translations, np.stack(perms)
