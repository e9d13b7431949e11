"""Read AIRSS buildcell seed files (``.cell``) into a composition and :class:`RandomSeedOptions`.

Supported, with AIRSS meaning:

- ``%BLOCK LATTICE_CART`` / ``LATTICE_ABC``: the seed cell. Its volume is the target volume when no
  ``#TARGVOL``/``#VARVOL`` is given; a ``#FIX`` line inside the block keeps the cell as written
  (only the positions are random).
- ``%BLOCK POSITIONS_FRAC`` / ``POSITIONS_ABS``: one line per atom, ``Sp x y z # label % NUM=n``.
  Positions are always random (as in buildcell without FIX/POSAMP); ``NUM=n`` repeats the atom
  ``n`` times. Labels shared by several lines (rigid molecular units) are not supported.
- ``#SPECIES=A%NUM=2,B%NUM=1`` (when no positions block), ``#NATOM=n`` (one species only, fixed n),
  ``#NFORM=n`` (multiplies the listed atoms; a range needs ``nform=``).
- At most :data:`~ase_unimat.search.random_seeds.MAX_ATOMS` (1000) atoms per built cell; a larger
  ``NUM`` x ``NFORM`` is refused at once.
- ``#MINSEP=d A-B=d2 ...`` (global then pair-specific, Angstrom), ``#SYMMOPS=n`` or ``n-m``,
  ``#SLACK=s``, ``#OVERLAP=o``, ``#COMPACT``.
- ``#TARGVOL=v`` / ``#VARVOL=v`` or ``v1-v2``: as in buildcell, the volume of the cell *as written*,
  one atom per line of the positions block (or per ``#SPECIES`` entry); buildcell scales it by
  (atoms built) / (lines), so the volume per atom is ``v / lines``. With ``#NATOM`` it is per atom.
  Without either, the lattice block's volume plays the same role (AIRSS's ``Al.cell`` example:
  a 8 A^3 cell and one line ``Al ... NUM=8`` give 64 A^3).

Text after ``##`` or ``!`` is a comment. Lines outside blocks that do not start with ``#`` are CASTEP
keywords and other CASTEP blocks (``SPECIES_POT``, ``EXTERNAL_PRESSURE`` ...): ignored and listed in
:attr:`CellSpec.ignored`. Any other ``#`` directive raises :class:`CellFileError` naming it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from ase.data import atomic_numbers
from ase.geometry import cellpar_to_cell

from ase_unimat.search.random_seed_options import RandomSeedOptions
from ase_unimat.search.random_seeds import MAX_ATOMS, RandomSeedSource
from ase_unimat.search.seeds import SeedSourceError

SUPPORTED_DIRECTIVES = ("SPECIES", "NATOM", "NFORM", "MINSEP", "TARGVOL", "VARVOL", "SYMMOPS", "SLACK", "OVERLAP", "COMPACT")
_SUPPORTED_BLOCKS = ("LATTICE_CART", "LATTICE_ABC", "POSITIONS_FRAC", "POSITIONS_ABS")
_DIRECTIVE = re.compile(r"^#\s*([A-Za-z_]+)\s*(?:=\s*(.*))?$")


class CellFileError(SeedSourceError):
    """An AIRSS seed file we cannot read or do not support."""


@dataclass(frozen=True)
class CellSpec:
    """What an AIRSS seed file asks for."""

    counts: dict[str, int]  # atoms of one built cell (seed formula unit x nform)
    seed_counts: dict[str, int]  # atoms of one formula unit of the seed
    nform: int
    options: RandomSeedOptions
    lattice: np.ndarray | None = None  # (3, 3) rows, the cell of the file
    ignored: tuple[str, ...] = field(default_factory=tuple)  # CASTEP keywords and blocks skipped
    path: str | None = None

    def source(self) -> RandomSeedSource:
        """The seed source (named ``"cell"``) that builds seeds under these directives."""
        return RandomSeedSource(options=self.options, name="cell")


def read_cell(path: str | Path, *, nform: int | None = None) -> CellSpec:
    """Parse an AIRSS seed file; ``nform`` overrides its ``#NFORM`` (e.g. from ``--formula-units``)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise CellFileError(f"cannot read seed file {path}: {err.strerror}") from None
    return replace(parse_cell(text, nform=nform, name=str(path)), path=str(path))


def parse_cell(text: str, *, nform: int | None = None, name: str = "<cell>") -> CellSpec:
    """Parse the text of an AIRSS seed file (see the module docstring for what is supported)."""
    blocks, directives, ignored = _split(text, name)
    lattice, fixed = _lattice(blocks, name)
    seed_counts, lines = _positions(blocks, name)
    if "SPECIES" in directives:
        species_counts = _species(directives["SPECIES"], name)
        if seed_counts and species_counts != seed_counts:
            raise CellFileError(f"{name}: #SPECIES {species_counts} disagrees with the positions block {seed_counts}")
        if not seed_counts:
            seed_counts, lines = species_counts, len(species_counts)
    if "NATOM" in directives:
        natom = _single_int(directives["NATOM"], "NATOM", name)
        if len(seed_counts) != 1:
            raise CellFileError(
                f"{name}: #NATOM with {len(seed_counts)} species is a variable-composition search, "
                "which is not supported; give every species a NUM"
            )
        seed_counts, lines = {next(iter(seed_counts)): natom}, 1  # buildcell: the volume is per atom
    if not seed_counts:
        raise CellFileError(f"{name}: no atoms (need a POSITIONS_FRAC/POSITIONS_ABS block or #SPECIES)")
    if nform is None:
        nform = _single_int(directives["NFORM"], "NFORM", name) if "NFORM" in directives else 1
    if int(nform) < 1:
        raise CellFileError(f"{name}: NFORM must be a positive integer, got {nform}")
    counts = {s: n * int(nform) for s, n in seed_counts.items()}
    if sum(counts.values()) > MAX_ATOMS:
        raise CellFileError(
            f"{name}: {sum(counts.values())} atoms per cell (NUM x NFORM); random seeds are built for "
            f"at most {MAX_ATOMS} atoms"
        )
    options = _options(directives, lines, lattice, fixed, name)
    return CellSpec(counts, seed_counts, int(nform), options, lattice, tuple(ignored), None)


def _split(text: str, name: str) -> tuple[dict[str, list[str]], dict[str, str], list[str]]:
    """Blocks (name -> lines), directives (NAME -> value) and ignored CASTEP lines."""
    blocks: dict[str, list[str]] = {}
    directives: dict[str, str] = {}
    ignored: list[str] = []
    current: str | None = None
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("##", 1)[0].split("!", 1)[0].strip()
        if not line:
            continue
        upper = line.upper()
        if upper.startswith("%BLOCK"):
            current = upper.split(maxsplit=1)[1].strip() if len(upper.split()) > 1 else ""
            blocks[current] = []
            continue
        if upper.startswith("%ENDBLOCK"):
            if current is None:
                raise CellFileError(f"{name}:{lineno}: %ENDBLOCK without %BLOCK")
            current = None
            continue
        if current is not None:
            blocks[current].append(line)
            continue
        if line.startswith("#"):
            match = _DIRECTIVE.match(line)
            if match is None:
                raise CellFileError(f"{name}:{lineno}: cannot read directive {line!r}")
            key, value = match.group(1).upper(), (match.group(2) or "").strip()
            if key not in SUPPORTED_DIRECTIVES:
                raise CellFileError(
                    f"{name}:{lineno}: unsupported buildcell directive #{key}; supported: "
                    + ", ".join(f"#{d}" for d in SUPPORTED_DIRECTIVES)
                )
            directives[key] = value
        else:
            ignored.append(line)
    if current is not None:
        raise CellFileError(f"{name}: %BLOCK {current} is never closed")
    for block in list(blocks):
        if block not in _SUPPORTED_BLOCKS:
            ignored.append(f"%BLOCK {block}")
            del blocks[block]
    return blocks, directives, ignored


def _lattice(blocks: Mapping[str, list[str]], name: str) -> tuple[np.ndarray | None, bool]:
    """The cell (3, 3) of a lattice block, and whether it is fixed (``#FIX`` inside the block)."""

    for block in ("LATTICE_CART", "LATTICE_ABC"):
        if block not in blocks:
            continue
        lines = blocks[block]
        fixed = any(line.upper() in ("#FIX", "#CFIX") for line in lines)
        others = [line for line in lines if line.startswith("#") and line.upper() not in ("#FIX", "#CFIX")]
        if others:
            raise CellFileError(f"{name}: unsupported directive {others[0]!r} in %BLOCK {block}")
        rows = [line for line in lines if not line.startswith("#")]
        if rows and rows[0].lower() in ("ang", "angstrom"):
            rows = rows[1:]
        try:
            values = np.array([[float(x) for x in row.split()] for row in rows])
        except ValueError:
            raise CellFileError(f"{name}: cannot read %BLOCK {block} (units other than ang are not supported)") from None
        if block == "LATTICE_CART" and values.shape == (3, 3):
            cell = values
        elif block == "LATTICE_ABC" and values.shape == (2, 3):
            cell = cellpar_to_cell(values.ravel())
        else:
            raise CellFileError(f"{name}: %BLOCK {block} has shape {values.shape}")
        if abs(np.linalg.det(cell)) < 1e-6:
            raise CellFileError(f"{name}: %BLOCK {block} has zero volume")
        return cell, fixed
    return None, False


def _positions(blocks: Mapping[str, list[str]], name: str) -> tuple[dict[str, int], int]:
    """Species counts of one seed formula unit (``NUM=`` repeats a line) and the number of lines."""
    counts: dict[str, int] = {}
    lines = 0
    labels: set[str] = set()
    for block in ("POSITIONS_FRAC", "POSITIONS_ABS"):
        for line in blocks.get(block, []):
            atom, _, note = line.partition("#")
            fields = atom.split()
            if len(fields) != 4:
                raise CellFileError(f"{name}: cannot read position line {line!r}")
            symbol = fields[0].split(":")[0]
            if symbol not in atomic_numbers or symbol == "X":
                raise CellFileError(f"{name}: unknown element {symbol!r} in line {line!r}")
            label, _, settings = note.partition("%")
            label = label.strip()
            if label:
                if label in labels:
                    raise CellFileError(
                        f"{name}: label {label!r} on several atoms is a molecular unit, which is not supported"
                    )
                labels.add(label)
            num = 1
            for token in settings.split():
                key, _, value = token.partition("=")
                if key.upper() != "NUM":
                    raise CellFileError(f"{name}: unsupported per-atom setting {key.upper()!r} in line {line!r}")
                num = _single_int(value, "NUM", name)
            counts[symbol] = counts.get(symbol, 0) + num
            lines += 1
    return counts, lines


def _species(value: str, name: str) -> dict[str, int]:
    """``A%NUM=2,B%NUM=1`` -> ``{"A": 2, "B": 1}`` (NUM defaults to 1)."""
    counts: dict[str, int] = {}
    for part in value.split(","):
        symbol, _, settings = part.strip().partition("%")
        if symbol not in atomic_numbers or symbol == "X":
            raise CellFileError(f"{name}: unknown element {symbol!r} in #SPECIES={value}")
        num = 1
        for token in settings.split("%") if settings else []:
            key, _, v = token.partition("=")
            if key.strip().upper() != "NUM":
                raise CellFileError(f"{name}: unsupported species setting {key.strip().upper()!r} in #SPECIES")
            num = _single_int(v, "NUM", name)
        counts[symbol] = counts.get(symbol, 0) + num
    return counts


def _values(text: str, key: str, name: str) -> list[float]:
    """Numbers of ``v``, ``a-b`` (both ends) or ``{a,b,c}``."""
    text = text.strip()
    try:
        if text.startswith("{") and text.endswith("}"):
            return [float(x) for x in text[1:-1].split(",")]
        first = text.split()[0]
        try:
            return [float(first)]
        except ValueError:
            lo, hi = first.split("-", 1)
            return [float(lo), float(hi)]
    except (ValueError, IndexError):
        raise CellFileError(f"{name}: cannot read #{key}={text}") from None


def _single_int(text: str, key: str, name: str) -> int:
    values = _values(str(text), key, name)
    if len(values) != 1 or values[0] != int(values[0]) or values[0] < 1:
        raise CellFileError(
            f"{name}: #{key}={text} must be one positive integer here (ranges give variable compositions; "
            "pass the number of formula units instead)"
        )
    return int(values[0])


def _minsep(value: str, name: str) -> tuple[float | None, dict[tuple[str, str], float]]:
    """``1.5 Li-Li=2.5 Li-Si=2.3`` -> (1.5, {("Li", "Li"): 2.5, ("Li", "Si"): 2.3})."""
    default: float | None = None
    pairs: dict[tuple[str, str], float] = {}
    for token in value.split():
        if token.upper() == "AUTO":
            raise CellFileError(f"{name}: #MINSEP=AUTO needs AIRSS's comp2minsep database; give distances in A")
        try:
            if "=" in token:
                pair, _, d = token.partition("=")
                a, _, b = pair.partition("-")
                if a not in atomic_numbers or b not in atomic_numbers:
                    raise CellFileError(f"{name}: unknown element pair {pair!r} in #MINSEP")
                pairs[(a, b)] = float(d)
            else:
                default = float(token)
        except ValueError:
            raise CellFileError(f"{name}: cannot read {token!r} in #MINSEP={value}") from None
    return default, pairs


def _options(directives, n_seed: int, lattice, fixed, name) -> RandomSeedOptions:
    """RandomSeedOptions of the directives; volumes are per line of the seed (``n_seed`` lines)."""
    minsep, pairs = _minsep(directives.get("MINSEP", ""), name)
    volume_key = "TARGVOL" if "TARGVOL" in directives else "VARVOL" if "VARVOL" in directives else None
    volume = None
    if volume_key is not None:
        values = _values(directives[volume_key], volume_key, name)
        if not all(math.isfinite(v) for v in values):
            raise CellFileError(f"{name}: #{volume_key}={directives[volume_key]} must be a finite volume")
        if min(values) <= 0:
            raise CellFileError(f"{name}: #{volume_key} must be positive")
        volume = (min(values) / n_seed, max(values) / n_seed)
    elif lattice is not None:
        v = abs(float(np.linalg.det(lattice))) / n_seed
        volume = (v, v)
    symmops = None
    if "SYMMOPS" in directives:
        values = _values(directives["SYMMOPS"], "SYMMOPS", name)
        if any(v != int(v) or v < 1 for v in values):
            raise CellFileError(f"{name}: #SYMMOPS={directives['SYMMOPS']} must be positive integers")
        symmops = (int(min(values)), int(max(values)))
    floats = {}
    for key in ("SLACK", "OVERLAP"):
        if key in directives:
            floats[key.lower()] = _values(directives[key], key, name)[0]
    if fixed and symmops not in (None, (1, 1)):
        raise CellFileError(f"{name}: a fixed lattice (#FIX) with #SYMMOPS is not supported")
    try:
        return RandomSeedOptions(
            minsep=minsep,
            pair_minsep=pairs,
            volume_per_atom=volume,
            symmops=symmops,
            compact="COMPACT" in directives,
            cell=tuple(map(tuple, lattice)) if fixed else None,
            **floats,
        )
    except SeedSourceError as err:
        raise CellFileError(f"{name}: {err}") from None
