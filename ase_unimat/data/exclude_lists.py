"""The ``--exclude`` and ``--exclude-formulas`` lists of a conversion: ids and reduced formulas read from a file.

Owns reading one column of an id file (a dataset ``.h5``, a CSV with a named column, or a text file
with one entry per line), the two lists built on it (material ids; reduced formulas in Hill order,
so that every polymorph and cell size of a composition is excluded), and the reduced formula of a
converted structure's atomic numbers that the formula list is matched against.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from pathlib import Path

import h5py
import numpy as np

from ase_unimat.core.formula import FormulaError, parse_formula, reduced_formula
from ase_unimat.core.periodic_table import z_to_symbol
from ase_unimat.data.convert_options import ConversionError
from ase_unimat.data.hdf5 import read_ids
from ase_unimat.data.input_formats import input_format, open_text

_FORMULA_COLUMNS = ("reduced_formula", "pretty_formula", "formula", "composition")


def _read_column(path: str | Path, *, kind: str, read_h5: Callable[[Path], Sequence[str]],
                 columns: Sequence[str]) -> list[str]:  # fmt: skip
    """The entries of an id file: ``read_h5(path)`` of a dataset (.h5/.hdf5), the first of ``columns``
    a CSV (.csv/.csv.gz) has (cells stripped), or the non-empty stripped lines of a text file.

    ``ConversionError`` when ``path`` is no file (``no such <kind> file``) or a CSV has none of ``columns``.
    """
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"no such {kind} file: {path}")
    if path.suffix in (".h5", ".hdf5"):
        return list(read_h5(path))
    if input_format(path) == "csv":
        with open_text(path) as handle:
            reader = csv.DictReader(handle)
            column = next((c for c in columns if c in (reader.fieldnames or [])), None)
            if column is None:
                missing = f"no {columns[0]} column" if len(columns) == 1 else f"none of the columns {', '.join(columns)}"
                raise ConversionError(f"{path} has {missing}")
            return [row[column].strip() for row in reader]
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def read_id_list(path: str | Path) -> set[str]:
    """Material ids from a dataset file (.h5), a CSV with ``material_id`` (.csv/.csv.gz) or a text file."""
    return set(_read_column(path, kind="id", read_h5=read_ids, columns=("material_id",)))


def _h5_formulas(path: Path) -> list[str]:
    with h5py.File(path, "r") as f:
        return [t.decode() if isinstance(t, bytes) else str(t) for t in f["formula"][:]]


def read_formula_list(path: str | Path) -> set[str]:
    """Reduced formulas (Hill order) of every structure listed in ``path``.

    ``path`` is a dataset (.h5, its ``formula`` strings), a CSV with one of the columns
    ``reduced_formula``, ``pretty_formula``, ``formula`` or ``composition`` (.csv/.csv.gz), or a
    text file with one formula per line. Any formula of a composition (``Mg2O2``, ``MgO``) gives the
    same reduced formula, so every polymorph and cell size of it is excluded.
    """

    texts = _read_column(path, kind="formula", read_h5=_h5_formulas, columns=_FORMULA_COLUMNS)
    formulas = set()
    for text in texts:
        try:
            formulas.add(reduced_formula(parse_formula(text.replace(" ", ""))))
        except FormulaError as err:
            raise ConversionError(f"{Path(path)}: {err}") from None
    return formulas


def reduced_formula_of(numbers) -> str:
    """The reduced formula (Hill order) of a structure's atomic numbers ``(n,)``."""
    z, counts = np.unique(np.asarray(numbers), return_counts=True)
    return reduced_formula({z_to_symbol(int(a)): int(c) for a, c in zip(z, counts, strict=True)})
