"""Elemental references of a hull, one rule for every element 1-94 (see :mod:`ase_unimat.evaluation.sun`).

An element's reference is its lowest recorded elemental polymorph when trusted, else a stand-in
built here (a diatomic molecule in a box, a measured crystal from :data:`ELEMENT_CRYSTALS`, or ASE's
reference state); the hull keeps whichever relaxes lower. This module is long because the table
of element crystals is.
"""


from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ase import Atoms
from ase.build import bulk, molecule
from ase.data import atomic_numbers
from ase.spacegroup import crystal

from ase_unimat.evaluation.reference import (
    HULL_SOURCES,
    ReferenceRecord,
    default_data_dir,
    load_reference_records,
    polymorph_rank,
)

#: DFT e_above_hull (eV/atom) up to which an elemental polymorph of the data is trusted as the reference.
ELEMENTAL_TRUST = 0.1
#: Edge (Å) of the cubic box that holds a diatomic reference molecule, relaxed at fixed cell.
BOX_EDGE = 10.0
#: Elements whose reference is the diatomic molecule in a box.
DIATOMIC = ("H", "N", "O", "F", "Cl", "Br", "I")
#: Bond lengths (Å) of the diatomics missing from ASE's g2 set (NIST CCCBDB, experimental r_e).
_BOND_NOT_IN_G2 = {"Br": 2.281, "I": 2.666}



# ---------------------------------------------------------------------------- elemental references


@dataclass(frozen=True)
class ElementCrystal:
    """A crystal to build an element's reference from: space group, cell parameters, Wyckoff sites.

    ``approximate`` marks a stand-in that is not the element's ground-state structure.
    """

    spacegroup: int
    cellpar: tuple[float, float, float, float, float, float]  # a, b, c (Å); alpha, beta, gamma (degrees)
    basis: tuple[tuple[float, float, float], ...]  # fractional Wyckoff positions
    approximate: bool
    note: str


def _cubic(a: float) -> tuple[float, float, float, float, float, float]:
    return (a, a, a, 90.0, 90.0, 90.0)


def _hexagonal(a: float, c: float) -> tuple[float, float, float, float, float, float]:
    return (a, a, c, 90.0, 90.0, 120.0)


#: Crystals for the elements whose ASE reference state is missing (B, P, Ga, Se, Te, Mn, Pa, Pm, Ra,
#: S, Pu, He, Rn, At, Fr) or broken (U, Np: ASE builds a one-atom cell without the basis, 83 and 154 Å^3/atom).
#: Measured room-temperature structures as tabulated in J. Donohue, *The Structures of the Elements*
#: (Wiley, 1974), and the papers named; the relaxation refines the cell, so the values are starts.
ELEMENT_CRYSTALS: dict[str, ElementCrystal] = {
    "B": ElementCrystal(166, _hexagonal(4.908, 12.567), ((0.11886, -0.11886, 0.89133), (0.19686, -0.19686, 0.02432)),
                        False, "alpha-B, R-3m, 12 atoms (Decker & Kasper, Acta Cryst. 12, 503, 1959)"),
    "P": ElementCrystal(64, (3.3136, 10.478, 4.3763, 90.0, 90.0, 90.0), ((0.0, 0.10168, 0.08056),),
                        False, "black P, Cmce (Brown & Rundqvist, Acta Cryst. 19, 684, 1965)"),
    "Ga": ElementCrystal(64, (4.5197, 7.6633, 4.5260, 90.0, 90.0, 90.0), ((0.0, 0.1549, 0.0810),),
                         False, "alpha-Ga, Cmce (Sharma & Donohue, Z. Kristallogr. 117, 293, 1962)"),
    "Se": ElementCrystal(152, _hexagonal(4.3662, 4.9536), ((0.2254, 0.0, 1 / 3),),
                         False, "trigonal Se, P3_121 (Cherin & Unger, Acta Cryst. 23, 670, 1967)"),
    "Te": ElementCrystal(152, _hexagonal(4.4572, 5.929), ((0.2636, 0.0, 1 / 3),),
                         False, "trigonal Te, P3_121"),
    "Mn": ElementCrystal(217, _cubic(8.9125), ((0.0, 0.0, 0.0), (0.3179, 0.3179, 0.3179), (0.3571, 0.3571, 0.0347),
                                               (0.0896, 0.0896, 0.2819)),
                         False, "alpha-Mn, I-43m, 29 atoms (Bradley & Thewlis, Proc. R. Soc. A 115, 456, 1927)"),
    "U": ElementCrystal(63, (2.854, 5.869, 4.955, 90.0, 90.0, 90.0), ((0.0, 0.1025, 0.25),),
                        False, "alpha-U, Cmcm (Barrett, Mueller & Hitterman, Phys. Rev. 129, 625, 1963)"),
    "Np": ElementCrystal(62, (6.663, 4.723, 4.887, 90.0, 90.0, 90.0), ((0.036, 0.25, 0.220), (0.319, 0.25, 0.866)),
                         False, "alpha-Np, Pnma (Zachariasen, Acta Cryst. 5, 660, 1952)"),
    "Pa": ElementCrystal(139, (3.925, 3.925, 3.238, 90.0, 90.0, 90.0), ((0.0, 0.0, 0.0),),
                         False, "body-centred tetragonal Pa, I4/mmm (Zachariasen, Acta Cryst. 5, 19, 1952)"),
    "Pm": ElementCrystal(194, _hexagonal(3.65, 11.65), ((0.0, 0.0, 0.0), (1 / 3, 2 / 3, 0.25)),
                         False, "double-hcp Pm, P6_3/mmc, like Nd (Pallmer & Chikalla, J. Less-Common Met. 24, 233, 1971)"),
    "Ra": ElementCrystal(229, _cubic(5.148), ((0.0, 0.0, 0.0),), False, "bcc Ra (Weigel & Trinkl, Radiochim. Acta 10, 78, 1968)"),
    "S": ElementCrystal(152, _hexagonal(3.930, 4.458), ((0.2254, 0.0, 1 / 3),),
                        True, "stand-in for orthorhombic S8 (128 atoms): helical chains in the trigonal-Se cell x 0.9"),
    "Pu": ElementCrystal(225, _cubic(4.637), ((0.0, 0.0, 0.0),), True, "stand-in for monoclinic alpha-Pu: fcc delta-Pu"),
    "He": ElementCrystal(225, _cubic(5.19), ((0.0, 0.0, 0.0),), True,
                         "stand-in for hcp He (solid only under pressure): fcc at its 35 Å^3/atom"),
    "Rn": ElementCrystal(225, _cubic(6.4), ((0.0, 0.0, 0.0),), True, "no measured structure: fcc like Xe"),
    "At": ElementCrystal(225, _cubic(4.95), ((0.0, 0.0, 0.0),), True, "no measured structure: fcc, ~3.5 Å neighbours"),
    "Fr": ElementCrystal(229, _cubic(6.2), ((0.0, 0.0, 0.0),), True, "no measured structure: bcc like Cs"),
}  # fmt: skip


def elemental_records(
    data_dir: Path | str | None = None, elements: Iterable[str] | None = None, *, sources: Sequence[str] = HULL_SOURCES
) -> dict[str, ReferenceRecord]:
    """Each element's best elemental polymorph (:func:`polymorph_rank`) in the data, at any cell size.

    Parameters
    ----------
    data_dir
        The shared data folder (default :func:`default_data_dir`).
    elements
        Symbols to return (default: every element with an elemental structure in the data).
    sources
        Keys of :data:`DATA_SOURCES` to search.
    """
    folder = str(Path(data_dir) if data_dir is not None else default_data_dir())
    best = _elemental_records(folder, tuple(sources))
    wanted = set(best) if elements is None else set(elements)
    return {symbol: record for symbol, record in best.items() if symbol in wanted}


@functools.lru_cache(maxsize=4)
def _elemental_records(data_dir: str, sources: tuple[str, ...]) -> dict[str, ReferenceRecord]:
    """Read once per process: the data are large and do not change."""
    return _best_per_element(load_reference_records(data_dir, sources=sources, max_atoms=None))


def _best_per_element(records: Iterable[ReferenceRecord]) -> dict[str, ReferenceRecord]:
    best: dict[str, ReferenceRecord] = {}
    for record in records:
        if len(record.counts) != 1:
            continue
        symbol = next(iter(record.counts))
        if symbol not in best or polymorph_rank(record) < polymorph_rank(best[symbol]):
            best[symbol] = record
    return best


def _trusted(record: ReferenceRecord | None, trust: float) -> bool:
    return record is not None and record.e_above_hull <= trust  # NaN (unknown) is never trusted


def elemental_fallback(symbol: str) -> tuple[str, Atoms]:
    """The reference structure that exists for every element 1-94 without data, with its id.

    See the module docstring for the rule. Gas-phase references carry ``info["fixed_cell"] = True``
    (:func:`phase_energies` relaxes them without changing the box). Raises ``ValueError`` for an
    element beyond Pu or an unknown symbol.
    """

    number = atomic_numbers.get(symbol, 0)
    if not 1 <= number <= 94:
        raise ValueError(f"no elemental reference for {symbol!r}: only elements 1-94 (H to Pu) have one")
    if symbol in DIATOMIC:
        bond = _BOND_NOT_IN_G2[symbol] if symbol in _BOND_NOT_IN_G2 else molecule(f"{symbol}2").get_distance(0, 1)
        return f"ase-molecule-{symbol}2", _in_box(Atoms(f"{symbol}2", positions=[(0, 0, 0), (0, 0, bond)]))
    if symbol in ELEMENT_CRYSTALS:
        spec = ELEMENT_CRYSTALS[symbol]
        atoms = crystal([symbol] * len(spec.basis), list(spec.basis), spacegroup=spec.spacegroup,
                        cellpar=list(spec.cellpar), primitive_cell=True)  # fmt: skip
        return f"ase-crystal-{symbol}{'-approx' if spec.approximate else ''}", atoms
    return f"ase-bulk-{symbol}", bulk(symbol)


def _in_box(atoms: Atoms) -> Atoms:
    atoms.set_cell([BOX_EDGE] * 3)
    atoms.pbc = True
    atoms.center()
    atoms.info["fixed_cell"] = True
    return atoms


def elemental_fallbacks(
    records: Sequence[ReferenceRecord],
    elements: Iterable[str],
    *,
    data_dir: Path | str | None = None,
    sources: Sequence[str] = HULL_SOURCES,
    trust: float = ELEMENTAL_TRUST,
) -> list[tuple[str, Atoms]]:
    """``(id, atoms)`` elemental references to add to ``records`` so that every element has one.

    For each element without a trusted elemental polymorph in ``records``: its best polymorph in
    the data (any size, :func:`elemental_records`, keyed by ``material_id``) unless ``records``
    already hold it, and, when that is not trusted either, :func:`elemental_fallback`. ``sources=()``
    skips the data, and so does a missing default data folder (``data_dir=None``: the caller gave the
    hull records, so the data is an extra); a missing ``data_dir`` given explicitly is an error.
    ``trust`` is :data:`ELEMENTAL_TRUST` (eV/atom above the DFT hull).
    """
    given = _best_per_element(records)
    wanted = [symbol for symbol in sorted(set(elements)) if not _trusted(given.get(symbol), trust)]
    use_data = bool(wanted and sources) and (data_dir is not None or default_data_dir().is_dir())
    data = elemental_records(data_dir, wanted, sources=sources) if use_data else {}
    out = []
    for symbol in wanted:
        record = data.get(symbol)
        if record is not None and (symbol not in given or given[symbol].material_id != record.material_id):
            out.append((record.material_id, record.atoms()))
        if not _trusted(record, trust):
            out.append(elemental_fallback(symbol))
    return out
