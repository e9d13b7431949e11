"""Space group and crystal system of generated structures, as the guidance and de novo benchmarks measure them."""

from __future__ import annotations

#: The last space-group number of each crystal system (International Tables numbering).
CRYSTAL_SYSTEMS = ((2, "triclinic"), (15, "monoclinic"), (74, "orthorhombic"), (142, "tetragonal"),
                   (167, "trigonal"), (194, "hexagonal"), (230, "cubic"))  # fmt: skip
SYMPREC = 0.1


def crystal_system(number: int) -> str:
    """The crystal system of space group ``number`` (1-230)."""
    for last, name in CRYSTAL_SYSTEMS:
        if 1 <= number <= last:
            return name
    raise ValueError(f"no space group {number}")


def spacegroup_number(atoms, *, symprec: float = SYMPREC) -> int:
    """spglib's space group of ``atoms`` at ``symprec`` (Angstrom; 0.1 tolerates sampling noise); 1 on failure."""
    import spglib

    cell = (atoms.cell[:], atoms.get_scaled_positions(wrap=True), atoms.numbers)
    dataset = spglib.get_symmetry_dataset(cell, symprec=symprec)
    return 1 if dataset is None else int(dataset.number)


def lattice_crystal_system(atoms, *, symprec: float = SYMPREC) -> str:
    """The crystal system of the cell alone (its point lattice's holohedry, spglib at ``symprec``).

    A trigonal group on a hexagonal lattice (P3, P-3m1, ...) reads as hexagonal here.
    """
    import spglib

    dataset = spglib.get_symmetry_dataset((atoms.cell[:], [[0.0, 0.0, 0.0]], [1]), symprec=symprec)
    return "triclinic" if dataset is None else crystal_system(int(dataset.number))
