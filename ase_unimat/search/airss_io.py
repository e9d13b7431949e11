"""AIRSS ``.res`` files: one relaxed structure per file, with the TITL line AIRSS tools read.

The TITL layout is ``TITL name pressure volume enthalpy 0 0 natoms (spacegroup) n - times_found``
(pressure in GPa, total cell volume in Å³, total enthalpy in eV), written by ASE's own
``write_res(..., write_info=False)`` from ``atoms.info`` (name, pressure, spacegroup, times_found)
and a ``SinglePointCalculator`` holding the enthalpy; ``ase.io.read`` and pymatgen's
``AirssProvider`` both read it back.

Space groups come from spglib with ``symprec=0.1`` Å (:data:`SYMPREC`), a loose tolerance like the
one AIRSS's ``cryan``/``ca`` use for freshly relaxed, slightly noisy structures; change it with the
``symprec`` argument.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import ase.io
import spglib
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read

from ase_unimat.core.atomic import atomic_path

#: spglib symmetry tolerance (Å) for the space group written into TITL lines.
SYMPREC = 0.1


def _symmetry_dataset(atoms: Atoms, symprec: float):
    """spglib's dataset of ``atoms``, or None when spglib finds nothing."""
    cell = (atoms.cell.array, atoms.get_scaled_positions(wrap=True), atoms.numbers)
    with warnings.catch_warnings():  # spglib >= 2.5 warns about its old None-on-error convention
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return spglib.get_symmetry_dataset(cell, symprec=symprec)
        except Exception:  # spglib.error.SpglibError under its new error handling
            return None


def spacegroup_symbol(atoms: Atoms, *, symprec: float = SYMPREC) -> str:
    """Hermann-Mauguin symbol of ``atoms`` from spglib (``"P1"`` when spglib finds nothing)."""
    dataset = _symmetry_dataset(atoms, symprec)
    return "P1" if dataset is None else str(dataset.international).replace(" ", "")


def spacegroup_number(atoms: Atoms, *, symprec: float = SYMPREC) -> int:
    """International space-group number of ``atoms`` from spglib (1 when spglib finds nothing)."""
    dataset = _symmetry_dataset(atoms, symprec)
    return 1 if dataset is None else int(dataset.number)


def write_res(
    path: str | Path,
    atoms: Atoms,
    *,
    name: str,
    pressure: float,
    enthalpy: float,
    spacegroup: str | None = None,
    times_found: int = 1,
    symprec: float = SYMPREC,
) -> Path:
    """Write one AIRSS ``.res`` file atomically (a temporary file renamed over ``path``).

    Parameters
    ----------
    path
        Destination file.
    atoms
        The structure (its own info and calculator are left untouched).
    name
        Structure name in the TITL line (no whitespace).
    pressure
        External pressure in GPa.
    enthalpy
        Total enthalpy in eV (AIRSS's energy field).
    spacegroup
        Hermann-Mauguin symbol; computed with spglib at ``symprec`` when ``None``.
    times_found
        How many relaxations ended in this structure.

    Returns
    -------
    Path
        ``path``.
    """

    if not name or any(c.isspace() for c in name):
        raise ValueError(f"res structure name must be non-empty without whitespace, got {name!r}")
    if int(times_found) < 1:
        raise ValueError(f"times_found must be >= 1, got {times_found}")
    path = Path(path)
    image = Atoms(numbers=atoms.numbers, cell=atoms.cell.array, positions=atoms.positions, pbc=True)
    image.info.update(
        name=name,
        pressure=float(pressure),
        spacegroup=spacegroup or spacegroup_symbol(atoms, symprec=symprec),
        times_found=int(times_found),
    )
    image.calc = SinglePointCalculator(image, energy=float(enthalpy))
    with atomic_path(path) as tmp:
        ase.io.write(tmp, image, format="res", write_info=False)
    return path


def read_res(path: str | Path) -> Atoms:
    """Read a ``.res`` file; ``atoms.info`` holds name, pressure, spacegroup, times_found and enthalpy."""

    atoms = read(str(path), format="res")
    enthalpy = atoms.calc.results.get("energy") if atoms.calc is not None else None
    atoms.info["enthalpy"] = float(enthalpy) if enthalpy is not None else 0.0
    return atoms
