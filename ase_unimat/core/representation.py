"""The UniMat codec: a periodic crystal <-> ``(coords, lattice)``.

``coords`` is float32 ``(L, 9, 18, 3)``: for every element cell of the periodic-table grid (see
:mod:`ase_unimat.core.periodic_table`) up to ``L`` slots, each holding one atom's fractional coordinates
in [0, 1), or ``-1`` in all three components when the slot is empty. ``lattice`` is
``(a, b, c, alpha, beta, gamma)`` in Angstrom and degrees.

Order of atoms within an element: occupied slots come first, sorted lexicographically by their
wrapped fractional coordinates (x, then y, then z) rounded to 1e-6, so that parser noise such as
-0.0 read as 2e-33 cannot swap two atoms. :func:`permute_slots` shuffles them for
augmentation; the model must not depend on the order.

The cell is stored only through its six parameters, so decoding rebuilds it in ASE's standard
orientation (``a`` along x, ``b`` in the xy plane). Encoding first makes a left-handed cell
right-handed by negating all three cell vectors together with the fractional coordinates, which
leaves every Cartesian position unchanged; the decoded crystal is therefore the same crystal, only
rotated.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from ase import Atoms
from ase.data import chemical_symbols
from ase.geometry import cell_to_cellpar, cellpar_to_cell

from ase_unimat.core.geometry import shortest_distance
from ase_unimat.core.periodic_table import CELL_TO_Z, GRID_SHAPE, MAX_Z, Z_TO_CELL

NULL = -1.0
DEFAULT_SLOTS = 20
#: Smallest cell volume per atom (Angstrom^3) that we accept as a real crystal.
MIN_VOLUME_PER_ATOM = 1e-3
#: Shortest interatomic distance (Angstrom, periodic images included) of a real crystal: the
#: ``min_distance`` the converter passes to :func:`encode`. The shortest bond of any element pair
#: (H-H, 0.74) is above it; atoms closer than this are a broken or duplicated record.
MIN_DISTANCE = 0.5


class RepresentationError(ValueError):
    """A structure that cannot be written as a UniMat tensor (or a tensor that is not a crystal)."""


def _as_atoms(structure) -> Atoms:
    """An ``ase.Atoms`` view of an Atoms or pymatgen Structure, checking order and species."""
    if isinstance(structure, Atoms):
        return structure
    # pymatgen is imported lazily: it is slow to import and not needed for ase-only use.
    from pymatgen.core import Structure

    if not isinstance(structure, Structure):
        raise RepresentationError(f"expected ase.Atoms or pymatgen Structure, got {type(structure).__name__}")
    if not structure.is_ordered:
        raise RepresentationError("disordered structure (partial occupancy) cannot be encoded")
    numbers = []
    for site in structure:
        specie = site.specie
        z = getattr(specie, "Z", 0)
        if not 1 <= z <= MAX_Z:
            raise RepresentationError(f"element {specie} is outside the periodic-table grid (Z = 1-{MAX_Z})")
        numbers.append(z)
    return Atoms(numbers=numbers, cell=structure.lattice.matrix, scaled_positions=structure.frac_coords, pbc=True)


def encode(structure, *, n_slots: int = DEFAULT_SLOTS,
           min_distance: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Encode one crystal.

    Parameters
    ----------
    structure
        ``ase.Atoms`` (periodic in all three directions) or pymatgen ``Structure`` (ordered).
    n_slots
        ``L``, the number of atom slots per element.
    min_distance
        When given (Angstrom), refuse a structure with two atoms closer than this, periodic images
        included (:class:`RepresentationError` "... closer than ..."). ``None`` (the default) checks
        nothing, for generated or noisy structures; data sources pass :data:`MIN_DISTANCE`.

    Returns
    -------
    coords : ndarray, float32, shape (L, 9, 18, 3)
    lattice : ndarray, float64, shape (6,)
    """
    atoms = _as_atoms(structure)
    if len(atoms) == 0:
        raise RepresentationError("structure has no atoms")
    if not np.all(atoms.pbc):
        raise RepresentationError(f"structure is not periodic in all three directions (pbc={atoms.pbc.tolist()})")
    cell = np.asarray(atoms.cell[:], dtype=np.float64)
    positions = atoms.get_positions()
    if not (np.all(np.isfinite(cell)) and np.all(np.isfinite(positions))):
        raise RepresentationError("structure has NaN or infinite cell or positions")
    volume = float(np.linalg.det(cell))
    if abs(volume) < MIN_VOLUME_PER_ATOM * len(atoms):
        raise RepresentationError(f"cell volume {abs(volume):.3g} A^3 is zero or degenerate")
    frac = np.linalg.solve(cell.T, positions.T).T  # (N, 3)
    if volume < 0:  # left-handed: negate cell and fractions together, same Cartesian crystal
        cell, frac = -cell, -frac
    numbers = atoms.numbers
    bad = (numbers < 1) | (numbers > MAX_Z)
    if np.any(bad):
        raise RepresentationError(
            f"atomic number {int(numbers[bad][0])} is outside the periodic-table grid (Z = 1-{MAX_Z})"
        )
    if min_distance is not None:
        _check_min_distance(atoms, min_distance)
    return _encode_arrays(numbers, frac, n_slots=n_slots), cell_to_cellpar(cell)


def _check_min_distance(atoms: Atoms, min_distance: float) -> None:
    """RepresentationError when two atoms (or an atom and an image) are closer than ``min_distance``.

    Exact for any cell (:func:`~ase_unimat.core.geometry.shortest_distance` with ``exact_below``);
    N^2 in time, bounded in memory, ~1 ms for 20 atoms (a neighbour list took ~11 ms).
    """
    distance = shortest_distance(atoms, exact_below=min_distance)
    if distance < min_distance:
        raise RepresentationError(
            f"two atoms {distance:.3g} A apart, closer than {min_distance} A (overlapping atoms)"
        )


def _wrap32(frac: np.ndarray) -> np.ndarray:
    """Fractional coordinates wrapped to [0, 1) in float32 (1.0 after rounding becomes 0.0)."""
    wrapped = np.mod(frac, 1.0).astype(np.float32)
    wrapped[wrapped >= 1.0] = 0.0
    return wrapped


def _encode_arrays(numbers: np.ndarray, frac: np.ndarray, *, n_slots: int) -> np.ndarray:
    """(L, 9, 18, 3) tensor from atomic numbers (N,) and fractional coordinates (N, 3)."""
    wrapped = _wrap32(frac)  # (N, 3)
    coords = np.full((n_slots, *GRID_SHAPE, 3), NULL, dtype=np.float32)
    for z in np.unique(numbers):
        members = wrapped[numbers == z]  # (n_z, 3)
        if len(members) > n_slots:
            raise RepresentationError(
                f"{len(members)} atoms of {_symbol(z)} exceed L = {n_slots} slots per element"
            )
        keys = np.mod(np.round(members.astype(np.float64), 6), 1.0)  # parser noise (-0.0 vs 1e-33) must not reorder
        order = np.lexsort((keys[:, 2], keys[:, 1], keys[:, 0]))
        row, col = Z_TO_CELL[z]
        coords[: len(members), row, col] = members[order]
    return coords


def _symbol(z: int) -> str:
    return chemical_symbols[int(z)]


def occupied(coords: np.ndarray, *, threshold: float = -0.5) -> np.ndarray:
    """Bool mask ``(..., L, 9, 18)`` of occupied slots (all three components above ``threshold``)."""
    return np.all(np.asarray(coords) > threshold, axis=-1)


def composition_of(coords: np.ndarray) -> np.ndarray:
    """(..., 9, 18) int64 atom counts per element cell of one tensor or a batch."""
    return occupied(coords).sum(axis=-3).astype(np.int64)


def atom_slots(coords: np.ndarray, *, threshold: float = -0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(slot, row, col)`` index arrays ``(n,)`` of the atoms of one ``(L, 9, 18, 3)`` tensor, in
    :func:`decode`'s atom order (by atomic number, then slot)."""
    slot, row, col = np.nonzero(occupied(coords, threshold=threshold))
    order = np.lexsort((slot, CELL_TO_Z[row, col]))
    return slot[order], row[order], col[order]


def decode(coords: np.ndarray, lattice: Sequence[float], *, threshold: float = -0.5) -> Atoms:
    """Decode one ``(L, 9, 18, 3)`` tensor and its lattice into periodic ``ase.Atoms``.

    A slot is an atom when all three components exceed ``threshold`` (so generated values near -1
    are dropped); its coordinates are wrapped into [0, 1). Atoms come out ordered by atomic number,
    then by slot.
    """
    coords = np.asarray(coords)
    if coords.ndim != 4 or coords.shape[1:] != (*GRID_SHAPE, 3):
        raise RepresentationError(f"coords must have shape (L, 9, 18, 3), got {coords.shape}")
    lattice = np.asarray(lattice, dtype=np.float64)
    if lattice.shape != (6,) or not np.all(np.isfinite(lattice)):
        raise RepresentationError(f"lattice must be 6 finite numbers (a, b, c, alpha, beta, gamma), got {lattice}")
    slot, row, col = atom_slots(coords, threshold=threshold)
    numbers = CELL_TO_Z[row, col]
    if np.any(numbers == 0):
        raise RepresentationError("tensor has atoms in grid cells that hold no element")
    frac = coords[slot, row, col].astype(np.float64)
    if not np.all(np.isfinite(frac)):
        raise RepresentationError("tensor has NaN or infinite coordinates")
    cell = lattice_to_cell(lattice)
    return Atoms(numbers=numbers, cell=cell, scaled_positions=np.mod(frac, 1.0), pbc=True)


def lattice_to_cell(lattice: Sequence[float]) -> np.ndarray:
    """3x3 cell matrix (rows are vectors) of ``(a, b, c, alpha, beta, gamma)``; error if degenerate."""
    lattice = np.asarray(lattice, dtype=np.float64)
    lengths, angles = lattice[:3], lattice[3:]
    if np.any(lengths <= 0) or np.any(angles <= 0) or np.any(angles >= 180):
        raise RepresentationError(f"invalid lattice parameters {lattice.round(4).tolist()}")
    cos = np.cos(np.radians(angles))
    if 1.0 - np.sum(cos**2) + 2.0 * np.prod(cos) <= 1e-12:  # squared volume of the unit-edge cell
        raise RepresentationError(f"lattice parameters {lattice.round(4).tolist()} give no 3-D cell")
    cell = cellpar_to_cell(lattice)
    if not np.all(np.isfinite(cell)) or np.linalg.det(cell) <= 1e-8:
        raise RepresentationError(f"lattice parameters {lattice.round(4).tolist()} give no 3-D cell")
    return cell


def lattices_to_cells(lattices: np.ndarray) -> np.ndarray:
    """Cells (N, 3, 3) of many ``(a, b, c, alpha, beta, gamma)`` rows (N, 6), as :func:`lattice_to_cell` each.

    Vectorised (ASE's convention: a along x, b in the xy plane; angles of exactly 90 degrees give
    exact zeros, as in ``ase.geometry.cellpar_to_cell``), ~100x faster than a loop for large
    reference sets. The first degenerate row raises :class:`RepresentationError` as
    :func:`lattice_to_cell` would.
    """
    lattices = np.asarray(lattices, dtype=np.float64).reshape(-1, 6)
    lengths, angles = lattices[:, :3], lattices[:, 3:]
    eps = 2 * np.spacing(90.0, dtype=np.float64)
    right = np.abs(np.abs(angles) - 90.0) < eps
    cos = np.where(right, 0.0, np.cos(np.radians(angles)))  # (N, 3) cos alpha, beta, gamma
    sin_gamma = np.where(right[:, 2], 1.0, np.sin(np.radians(angles[:, 2])))
    cx = cos[:, 1]
    cy = (cos[:, 0] - cos[:, 1] * cos[:, 2]) / sin_gamma
    cz_sq = 1.0 - cx**2 - cy**2
    unit = np.zeros((len(lattices), 3, 3))
    unit[:, 0, 0] = 1.0
    unit[:, 1, 0], unit[:, 1, 1] = cos[:, 2], sin_gamma
    unit[:, 2, 0], unit[:, 2, 1], unit[:, 2, 2] = cx, cy, np.sqrt(np.clip(cz_sq, 0.0, None))
    cells = unit * lengths[:, :, None]
    bad = (np.any(lengths <= 0, axis=1) | np.any(angles <= 0, axis=1) | np.any(angles >= 180, axis=1)
           | (1.0 - np.sum(cos**2, axis=1) + 2.0 * np.prod(cos, axis=1) <= 1e-12) | (cz_sq <= 0)
           | ~np.all(np.isfinite(cells), axis=(1, 2)))  # fmt: skip
    bad[~bad] = np.linalg.det(cells[~bad]) <= 1e-8
    if np.any(bad):
        lattice_to_cell(lattices[np.flatnonzero(bad)[0]])  # raises with the row's own message
        raise RepresentationError(f"lattice parameters {lattices[np.flatnonzero(bad)[0]].round(4).tolist()} give no 3-D cell")
    return cells


def to_structure(obj: Any):
    """A pymatgen ``Structure`` from an ``ase.Atoms`` or a ``Structure`` (returned as is)."""
    # pymatgen takes ~1 s to import; only the callers that need a Structure pay for it.
    from pymatgen.core import Structure
    from pymatgen.io.ase import AseAtomsAdaptor  # pymatgen is slow to import

    if isinstance(obj, Structure):
        return obj
    if isinstance(obj, Atoms):
        return AseAtomsAdaptor.get_structure(obj)
    raise TypeError(f"expected ase.Atoms or pymatgen Structure, got {type(obj).__name__}")


def encode_batch(structures: Sequence, *, n_slots: int = DEFAULT_SLOTS) -> tuple[np.ndarray, np.ndarray]:
    """Encode many crystals: coords ``(N, L, 9, 18, 3)`` float32 and lattice ``(N, 6)`` float64."""
    coords = np.full((len(structures), n_slots, *GRID_SHAPE, 3), NULL, dtype=np.float32)
    lattice = np.zeros((len(structures), 6))
    for i, structure in enumerate(structures):
        coords[i], lattice[i] = encode(structure, n_slots=n_slots)
    return coords, lattice


def decode_batch(coords: np.ndarray, lattice: np.ndarray, *, threshold: float = -0.5) -> list[Atoms]:
    """Decode a batch ``(N, L, 9, 18, 3)`` with lattices ``(N, 6)`` into a list of Atoms."""
    coords = np.asarray(coords)
    if coords.ndim != 5:
        raise RepresentationError(f"batched coords must have shape (N, L, 9, 18, 3), got {coords.shape}")
    lattice = np.asarray(lattice)
    if len(lattice) != len(coords):
        raise RepresentationError(f"{len(coords)} coords tensors but {len(lattice)} lattices")
    return [decode(c, lat, threshold=threshold) for c, lat in zip(coords, lattice, strict=True)]


def permute_slots(coords: np.ndarray, *, rng: np.random.Generator) -> np.ndarray:
    """Shuffle the occupied slots within each element of ``(..., L, 9, 18, 3)`` (empty slots stay last).

    Vectorised: a random key per slot, with empty slots keyed to +inf, sorted along the L axis.
    """
    coords = np.asarray(coords)
    mask = occupied(coords)  # (..., L, 9, 18)
    keys = np.where(mask, rng.random(mask.shape), np.inf)
    order = np.argsort(keys, axis=-3)  # (..., L, 9, 18)
    return np.take_along_axis(coords, order[..., None], axis=-4)


def canonical_order(coords: np.ndarray) -> np.ndarray:
    """Re-sort the occupied slots of one ``(L, 9, 18, 3)`` tensor into the documented order."""
    atoms = decode(coords, (1.0, 1.0, 1.0, 90.0, 90.0, 90.0))
    return _encode_arrays(atoms.numbers, atoms.get_scaled_positions(wrap=False), n_slots=coords.shape[0])
