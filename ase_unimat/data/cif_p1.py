"""A fast reader for the simple P1 CIFs that pymatgen writes (the MP-20/CDVAE ``cif`` column).

pymatgen's ``CifParser`` takes ~2-3 ms per MP-20 structure; this reader takes a small fraction of
that and gives the same crystal: it accepts only one data block with the identity as its only
symmetry operation, plain cell parameters, and an ``atom_site`` loop of element symbols with
fractional coordinates and occupancy 1, no two sites closer than pymatgen's site tolerance. It
rounds coordinates within 1e-4 of 1/3 or 2/3 to those values exactly as ``CifParser`` does.
Anything else raises :class:`NotSimpleCif`, and the caller falls back to pymatgen (which then
handles disorder, symmetry, oxidation states or reports the error).
"""

from __future__ import annotations

import math

import numpy as np
from ase import Atoms

from ase_unimat.core.periodic_table import symbol_to_z

_CELL_TAGS = ("_cell_length_a", "_cell_length_b", "_cell_length_c",
              "_cell_angle_alpha", "_cell_angle_beta", "_cell_angle_gamma")
_SYMOP_TAGS = ("_symmetry_equiv_pos_as_xyz", "_space_group_symop_operation_xyz")
FRAC_TOLERANCE = 1e-4  # pymatgen CifParser's frac_tolerance
SITE_TOLERANCE = 1e-4  # pymatgen CifParser's site_tolerance


class NotSimpleCif(ValueError):
    """The CIF is not the simple P1 form this reader handles; use a full CIF parser."""


class TooManySites(ValueError):
    """A simple P1 CIF with more sites than allowed (raised before any per-pair work)."""

    def __init__(self, count: int, max_atoms: int) -> None:
        super().__init__(f"{count} atoms > max atoms {max_atoms}")
        self.count = count
        self.max_atoms = max_atoms


def _float(token: str) -> float:
    if "(" in token:
        raise NotSimpleCif(f"value with uncertainty {token!r}")
    try:
        return float(token)
    except ValueError:
        raise NotSimpleCif(f"not a number: {token!r}") from None


def _scan(text: str) -> tuple[dict[str, str], list[tuple[list[str], list[str]]]]:
    """Single-valued tags and loops ``(header, rows)`` of a one-block CIF without text fields."""
    tags: dict[str, str] = {}
    loops: list[tuple[list[str], list[str]]] = []
    lines = text.splitlines()
    blocks, i = 0, 0
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        if not line or line.startswith("#"):
            continue
        if line.startswith(";"):
            raise NotSimpleCif("multi-line text field")
        if line.startswith("data_"):
            blocks += 1
            continue
        if line == "loop_":
            header: list[str] = []
            while i < len(lines) and lines[i].strip().startswith("_"):
                header.append(lines[i].strip())
                i += 1
            rows: list[str] = []
            while i < len(lines):
                row = lines[i].strip()
                if row.startswith(("_", "loop_", "data_")):
                    break
                if row.startswith(";"):
                    raise NotSimpleCif("multi-line text field")
                if row and not row.startswith("#"):
                    rows.append(row)
                i += 1
            loops.append((header, rows))
            continue
        if line.startswith("_"):
            parts = line.split(None, 1)
            if len(parts) != 2:
                raise NotSimpleCif(f"tag {parts[0]} without a value on its line")
            tags[parts[0]] = parts[1].strip()
            continue
        raise NotSimpleCif(f"unexpected line {line[:40]!r}")
    if blocks != 1:
        raise NotSimpleCif(f"{blocks} data blocks")
    return tags, loops


def _check_identity_only(loops: list[tuple[list[str], list[str]]]) -> None:
    for header, rows in loops:
        for tag in _SYMOP_TAGS:
            if tag in header:
                ops = [row.split(None, 1)[-1] if len(header) > 1 else row for row in rows]
                if len(ops) != 1 or ops[0].replace("'", "").replace('"', "").replace(" ", "").lower() != "x,y,z":
                    raise NotSimpleCif("symmetry operations other than the identity")
                return
    raise NotSimpleCif("no symmetry operation loop")


def _ideal(value: float) -> float:
    for ideal in (1 / 3, 2 / 3):
        if math.isclose(value / ideal, 1, abs_tol=FRAC_TOLERANCE, rel_tol=0):
            return ideal
    return value


def _cell(cellpar: list[float]) -> list[list[float]]:
    """Cell vectors of ``(a, b, c, alpha, beta, gamma)``: a along x, b in the xy plane (as ASE)."""
    a, b, c = cellpar[:3]
    cos_a, cos_b, cos_g = (0.0 if x == 90.0 else math.cos(math.radians(x)) for x in cellpar[3:])
    sin_g = 1.0 if cellpar[5] == 90.0 else math.sin(math.radians(cellpar[5]))
    if min(a, b, c) <= 0 or sin_g <= 0:
        raise NotSimpleCif("cell parameters give no 3-D cell")
    c_y = (cos_a - cos_b * cos_g) / sin_g
    c_z2 = 1.0 - cos_b * cos_b - c_y * c_y
    if c_z2 <= 0:
        raise NotSimpleCif("cell parameters give no 3-D cell")
    return [[a, 0.0, 0.0], [b * cos_g, b * sin_g, 0.0], [c * cos_b, c * c_y, c * math.sqrt(c_z2)]]


def _has_duplicate_site(frac: np.ndarray) -> bool:
    """Whether two fractional points (n, 3) in [0, 1] are closer than SITE_TOLERANCE in every component.

    Periodic in all three directions (scipy's k-d tree with a unit box, Chebyshev metric).
    """
    from scipy.spatial import cKDTree

    points = np.where(frac >= 1.0, 0.0, frac)  # np.mod can round up to exactly 1.0
    tree = cKDTree(points, boxsize=1.0)
    radius = float(np.nextafter(SITE_TOLERANCE, 0.0))  # the tree counts <= radius; pymatgen's rule is <
    return bool(tree.query_pairs(radius, p=np.inf, output_type="ndarray").size)


def parse_p1_cif(text: str, *, max_atoms: int | None = None) -> Atoms:
    """Periodic ``ase.Atoms`` of a simple P1 CIF; :class:`NotSimpleCif` for anything else.

    Parameters
    ----------
    text
        The CIF.
    max_atoms
        When given, a P1 CIF with more rows in its ``atom_site`` loop raises :class:`TooManySites`
        as soon as they are counted. The duplicate-site check uses a periodic k-d tree, so time
        and memory grow as N log N, never N^2.
    """
    tags, loops = _scan(text)
    _check_identity_only(loops)
    try:
        cellpar = [_float(tags[tag]) for tag in _CELL_TAGS]
    except KeyError as err:
        raise NotSimpleCif(f"missing {err.args[0]}") from None
    sites = [(header, rows) for header, rows in loops if "_atom_site_fract_x" in header]
    if len(sites) != 1:
        raise NotSimpleCif("no single atom_site loop with fractional coordinates")
    header, rows = sites[0]
    if max_atoms is not None and len(rows) > max_atoms:
        raise TooManySites(len(rows), max_atoms)
    try:
        columns = [header.index(t) for t in ("_atom_site_type_symbol", "_atom_site_fract_x",
                                             "_atom_site_fract_y", "_atom_site_fract_z")]
    except ValueError:
        raise NotSimpleCif("atom_site loop without type symbols") from None
    occupancy = header.index("_atom_site_occupancy") if "_atom_site_occupancy" in header else None
    numbers, frac = [], []
    for row in rows:
        if "'" in row or '"' in row:
            raise NotSimpleCif("quoted value in the atom_site loop")
        tokens = row.split()
        if len(tokens) != len(header):
            raise NotSimpleCif("atom_site row with a different number of values than columns")
        if occupancy is not None and _float(tokens[occupancy]) != 1.0:
            raise NotSimpleCif("partial occupancy")
        try:
            numbers.append(symbol_to_z(tokens[columns[0]]))
        except KeyError:
            raise NotSimpleCif(f"species {tokens[columns[0]]!r} is not a plain element symbol") from None
        frac.append([_ideal(_float(tokens[c])) for c in columns[1:]])
    if not numbers:
        raise NotSimpleCif("no atoms")
    frac_arr = np.mod(np.asarray(frac, dtype=np.float64), 1.0)  # (n, 3)
    if _has_duplicate_site(frac_arr):
        raise NotSimpleCif("two sites at the same position")
    return Atoms(numbers=numbers, cell=_cell(cellpar), scaled_positions=frac_arr, pbc=True)
