"""What ``unimat-sample`` does with its options: the library side of ``cli/sample.py`` (which only parses and prints).

:func:`check_options` refuses option combinations that cannot be sampled, :func:`parse_spacegroup`
reads ``--spacegroup``, :func:`output_format` tells the file format of ``--out``, :func:`sample`
makes the structures (structure ``i`` has seed ``SEED + i``, its formula units given by the
command's per-seed draw), :func:`write_structures` writes them and :func:`summary` is the line the
command prints. A mistake is a ``ValueError`` naming the command-line option, which the command
prints on one line.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

from ase_unimat.generation.generator import generate


def check_options(*, n: int, guidance: float | None, formula: str | None, elements: str | None,
                  formula_units: tuple[int, int], charge_balanced: bool) -> None:  # fmt: skip
    """Refuse (``ValueError``) the option combinations ``unimat-sample`` cannot sample."""
    if n < 1:
        raise ValueError(f"-n must be at least 1, got {n}")
    if guidance is not None and not guidance >= 0:
        raise ValueError(f"--guidance must be >= 0, got {guidance}")
    if formula is not None and elements is not None:
        raise ValueError("give --formula or --elements, not both")
    if formula is None and tuple(formula_units) != (1, 1):
        raise ValueError("--formula-units needs --formula")
    if charge_balanced and formula is not None:
        raise ValueError("--charge-balanced applies to de novo sampling (no --formula)")


def parse_spacegroup(text: str) -> int | str | None:
    """``--spacegroup``: ``default``, ``auto``, ``none`` or a number 1-230."""
    word = text.strip().lower()
    if word in ("default", "auto"):
        return word
    if word == "none":
        return None
    if not word.isdigit() or not 1 <= int(word) <= 230:
        raise ValueError(f"--spacegroup must be a number 1-230, 'auto' or 'none', got {text!r}")
    return int(word)


def output_format(out: Path, fmt: str) -> str:
    """The file format: explicit, or from the suffix (.extxyz/.xyz, .cif; no suffix: a folder of .res)."""
    if fmt != "auto":
        return fmt
    suffix = out.suffix.lower()
    if suffix in (".extxyz", ".xyz"):
        return "extxyz"
    if suffix == ".cif":
        return "cif"
    if suffix == "" or out.is_dir():
        return "res"
    raise ValueError(f"cannot tell the format of {out}: use .extxyz, .cif, a folder, or --format")


def sample(formula: str | None, n: int, *, seed: int, units_of: Callable[[int], int], elements: str | None,
           charge_balanced: bool, **settings: Any) -> list:  # fmt: skip
    """The ``n`` structures: de novo (``formula`` None) in one :func:`generate` call, else one call per formula-unit group.

    Structure ``i`` has seed ``seed + i`` and ``units_of(i)`` formula units; ``settings`` are the
    remaining :func:`generate` keywords (``spacegroup``, ``model``, ``guidance``, ``steps``,
    ``sampler``, ``device``, ``batch_size``, ``progress``).
    """
    if formula is None:
        return generate(None, n, elements=elements, charge_balanced=charge_balanced, seed=seed, **settings)
    by_units: dict[int, list[int]] = {}
    for i in range(n):
        by_units.setdefault(units_of(i), []).append(i)
    structures: list = [None] * n
    for units, indices in by_units.items():
        made = generate(formula, formula_units=units, seeds=[seed + i for i in indices], **settings)
        for i, atoms in zip(indices, made, strict=True):
            structures[i] = atoms
    return structures


def write_structures(structures: Sequence, out: Path, fmt: str) -> list[Path]:
    """Write Atoms as one extxyz/CIF file, or one AIRSS ``.res`` file per structure in folder ``out``."""
    if fmt in ("extxyz", "cif"):
        out.parent.mkdir(parents=True, exist_ok=True)
        write(out, structures, format=fmt)
        return [out]
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for atoms in structures:
        name = f"{atoms.get_chemical_formula(mode='metal', empirical=False)}-unimat-{int(atoms.info['seed']):06d}"
        res = atoms.copy()
        res.info = {"name": name, "pressure": 0.0, "spacegroup": "P1", "times_found": 1}
        # AIRSS TITL lines need an energy; an unrelaxed seed has none, so 0.0 is written.
        res.calc = SinglePointCalculator(res, energy=0.0)
        path = out / f"{name}.res"
        write(path, res, format="res", write_info=False)
        paths.append(path)
    return paths


def summary(structures: Sequence, paths: Sequence[Path], out: Path, fmt: str, *, formula: str | None,
            formula_units: tuple[int, int]) -> str:  # fmt: skip
    """The line the command prints: how many structures, of what, written where."""
    where = out if fmt != "res" else f"{out}/ ({len(paths)} .res files)"
    if formula is not None:
        units = formula_units[0] if formula_units[0] == formula_units[1] else "-".join(map(str, formula_units))
        what = f"of {formula} x{units}"
    else:
        what = f"de novo ({len({a.get_chemical_formula() for a in structures})} compositions)"
    return f"wrote {len(structures)} structures {what} to {where}"
