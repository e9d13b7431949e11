"""The UniMat HDF5 dataset format (one file per dataset); its torch ``Dataset`` is ``ase_unimat.training.dataset``.

Layout (``N`` structures, ``M`` atoms in all; every dataset resizable along its first axis)::

    /coords         (N, L, 9, 18, 3) float32  UniMat tensors, -1 in empty slots    chunks (16, L, 9, 18, 3), gzip 4
    /lattice        (N, 6)           float32  a, b, c (Angstrom), alpha, beta, gamma (degrees)
    /composition    (N, 9, 18)       uint8    atoms per element cell
    /natoms         (N,)             int32    atoms per cell
    /material_id    (N,)             str      UTF-8, variable length (the source's id)
    /formula        (N,)             str      UTF-8, the cell's formula in Hill order (not reduced)
    /properties/<name> (N,)          float64 (NaN = missing) or int64 (-1 = missing, see its attrs)
    /atoms/z        (M,)             uint8    atomic numbers, structure after structure
    /atoms/frac     (M, 3)           float32  fractional coordinates in [0, 1) of those atoms

Root attributes: ``format`` ("unimat-hdf5"), ``format_version``, ``L``, ``grid_shape``,
``grid_layout`` (text), ``null_value`` (-1.0), ``units`` (JSON), ``source`` (JSON list of inputs),
``tool_version``, ``n_committed`` (= N, for readers that follow a committed-rows convention) and
``history`` (JSON list of the conversion runs that built the file).

Why both ``coords`` and ``atoms/*``. ``coords`` is the format users read with plain h5py
(``f["coords"][i]`` is a UniMat tensor). Measured on the MP-20 train split (3,420 structures):
gzip level 4 *without* the shuffle filter stores it in ~166 bytes per structure (chunks of 16
structures; shuffle makes it worse, ~240 B; lzf ~580 B), but a random-access read must inflate a
whole chunk of 38.9 KB-per-structure tensors, ~10,000 structures/s at best with one structure per
chunk and ~1,500/s with 16. ``atoms/z`` and ``atoms/frac`` hold the same atoms sparsely (~95 B per
structure, gzip + shuffle) and read at ~90,000 random structures/s; ``UniMatDataset`` reads only
those (plus ``lattice``/``natoms``) and materialises the dense tensor in memory. Within a structure
the atoms are stored in decoding order (by Z, then slot), so an atom's slot is its rank within its
element. Both views are written from the same arrays in the same step. Measured totals: 350 bytes
per structure for the MP-20 train file (277 of them data, the rest fixed HDF5 overhead) and 281 over
all 20,227 structures of <= 20 atoms in ../shared/data (``bench/results/convert.json``).
``lattice`` is float32: its round trip stays within 1e-7 relative, well inside the 1e-5 required.
A *compact* file (root attribute ``compact``; :mod:`ase_unimat.data.compact`, the reference sets
shipped beside models) has no ``coords``: every reader here builds the dense tensor from ``atoms/*``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from ase_unimat import __version__
from ase_unimat.core.formula import format_formula
from ase_unimat.core.periodic_table import CELL_TO_Z, GRID_SHAPE, Z_TO_CELL, z_to_symbol
from ase_unimat.core.representation import NULL, RepresentationError, atom_slots, decode, encode

FORMAT_NAME = "unimat-hdf5"
FORMAT_VERSION = 1
COORDS_CHUNK = 16
ROW_CHUNK = 1024
ATOM_CHUNK = 4096
INT_MISSING = -1
GRID_LAYOUT = (
    "9 x 18 periodic-table grid: rows 0-6 are periods 1-7, columns 0-17 are groups 1-18; row 7 holds "
    "the lanthanides La-Lu (Z 57-71) and row 8 the actinides Ac-Lr (Z 89-103) in columns 2-16; the "
    "group-3 cells of periods 6 and 7 are empty (see ase_unimat.core.periodic_table)"
)
UNITS = {"lattice": "a, b, c in Angstrom; alpha, beta, gamma in degrees", "coords": "fractional, [0, 1)",
         "atoms/frac": "fractional, [0, 1)"}
_STR = h5py.string_dtype("utf-8")


class DatasetFormatError(ValueError):
    """A file that is not a UniMat HDF5 dataset, or data that does not fit one."""


@dataclass
class StructureBatch:
    """Structures in sparse form: what the converter produces and the file stores under ``atoms/``."""

    natoms: np.ndarray  # (n,) int64
    lattice: np.ndarray  # (n, 6) float64
    numbers: np.ndarray  # (m,) int64, each structure's atoms sorted by Z then slot
    frac: np.ndarray  # (m, 3) float32 in [0, 1)
    material_id: list[str]
    formula: list[str]
    properties: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (n,)

    def __len__(self) -> int:
        return len(self.natoms)

    @classmethod
    def concat(cls, batches: Sequence[StructureBatch]) -> StructureBatch:
        """One batch holding ``batches`` one after another (property columns must agree)."""
        if not batches:
            return empty_batch()
        names = list(batches[0].properties)
        return cls(
            natoms=np.concatenate([b.natoms for b in batches]).astype(np.int64),
            lattice=np.concatenate([b.lattice for b in batches]).reshape(-1, 6),
            numbers=np.concatenate([b.numbers for b in batches]).astype(np.int64),
            frac=np.concatenate([b.frac for b in batches]).reshape(-1, 3).astype(np.float32),
            material_id=[m for b in batches for m in b.material_id],
            formula=[f for b in batches for f in b.formula],
            properties={k: np.concatenate([b.properties[k] for b in batches]) for k in names},
        )

    def coords(self, n_slots: int) -> np.ndarray:
        """Dense UniMat tensors ``(n, L, 9, 18, 3)`` float32 of the batch."""
        return dense_coords(self.natoms, self.numbers, self.frac, n_slots=n_slots)

    def composition(self) -> np.ndarray:
        """(n, 9, 18) int64 atom counts per element cell."""
        grid = np.zeros((len(self), *GRID_SHAPE), dtype=np.int64)
        owner = np.repeat(np.arange(len(self)), self.natoms)  # (m,)
        rows, cols = Z_TO_CELL[self.numbers].T
        np.add.at(grid, (owner, rows, cols), 1)
        return grid


def empty_batch() -> StructureBatch:
    """A batch with no structures."""
    return StructureBatch(np.zeros(0, np.int64), np.zeros((0, 6)), np.zeros(0, np.int64),
                          np.zeros((0, 3), np.float32), [], [], {})


def sparse_atoms(coords: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Atomic numbers ``(n,)`` and fractions ``(n, 3)`` of one ``(L, 9, 18, 3)`` tensor, by Z then slot."""
    slot, row, col = atom_slots(coords)
    return CELL_TO_Z[row, col].astype(np.int64), coords[slot, row, col].astype(np.float32)


def slot_of_atoms(natoms: np.ndarray, numbers: np.ndarray) -> np.ndarray:
    """Slot index ``(m,)`` of each atom: its rank within its element inside its structure."""
    m = len(numbers)
    owner = np.repeat(np.arange(len(natoms)), natoms)  # (m,)
    key = owner * 256 + numbers
    starts = np.ones(m, dtype=bool)
    starts[1:] = key[1:] != key[:-1]
    first = np.maximum.accumulate(np.where(starts, np.arange(m), 0))
    return np.arange(m) - first


def dense_coords(natoms: np.ndarray, numbers: np.ndarray, frac: np.ndarray, *, n_slots: int) -> np.ndarray:
    """Materialise ``(n, L, 9, 18, 3)`` float32 tensors from sparse atoms (sorted by Z within structures)."""
    natoms = np.asarray(natoms, dtype=np.int64)
    numbers = np.asarray(numbers, dtype=np.int64)
    out = np.full((len(natoms), n_slots, *GRID_SHAPE, 3), NULL, dtype=np.float32)
    if len(numbers) == 0:
        return out
    slot = slot_of_atoms(natoms, numbers)
    if slot.max() >= n_slots:
        raise RepresentationError(f"more than L = {n_slots} atoms of one element in a structure")
    owner = np.repeat(np.arange(len(natoms)), natoms)
    rows, cols = Z_TO_CELL[numbers].T
    out[owner, slot, rows, cols] = frac
    return out


def batch_from_structures(structures: Sequence, *, n_slots: int = 20, material_ids: Sequence[str] | None = None,
                          properties: Mapping[str, Sequence[float]] | None = None) -> StructureBatch:
    """Encode ``ase.Atoms`` / pymatgen Structures into a :class:`StructureBatch` (raises RepresentationError)."""

    natoms, lattice, numbers, fracs, formulas = [], [], [], [], []
    for structure in structures:
        coords, cellpar = encode(structure, n_slots=n_slots)
        z, frac = sparse_atoms(coords)
        natoms.append(len(z))
        lattice.append(cellpar)
        numbers.append(z)
        fracs.append(frac)
        uniq, counts = np.unique(z, return_counts=True)
        formulas.append(format_formula({z_to_symbol(u): int(c) for u, c in zip(uniq, counts, strict=True)}))
    n = len(natoms)
    ids = list(material_ids) if material_ids is not None else [str(i) for i in range(n)]
    if len(ids) != n:
        raise ValueError(f"{len(ids)} material ids for {n} structures")
    props = {k: np.asarray(v, dtype=np.float64) for k, v in (properties or {}).items()}
    for k, v in props.items():
        if v.shape != (n,):
            raise ValueError(f"property {k!r} has shape {v.shape}, expected ({n},)")
    return StructureBatch(
        natoms=np.asarray(natoms, dtype=np.int64), lattice=np.asarray(lattice, dtype=np.float64).reshape(-1, 6),
        numbers=np.concatenate(numbers) if numbers else np.zeros(0, np.int64),
        frac=np.concatenate(fracs) if fracs else np.zeros((0, 3), np.float32),
        material_id=ids, formula=formulas, properties=props,
    )


# ----------------------------------------------------------------------------------------------- writing


def create_file(path: str | Path, *, n_slots: int, source: Sequence[str] = (), attrs: Mapping | None = None) -> h5py.File:
    """Create an empty dataset file at ``path`` (overwriting it) and return it open for writing."""

    h5 = h5py.File(path, "w")
    h5.attrs.update({
        "format": FORMAT_NAME, "format_version": FORMAT_VERSION, "L": int(n_slots), "grid_shape": GRID_SHAPE,
        "grid_layout": GRID_LAYOUT, "null_value": NULL, "units": json.dumps(UNITS),
        "source": json.dumps(list(source)), "tool_version": __version__, "n_committed": 0, "history": "[]",
    })
    for key, value in (attrs or {}).items():
        h5.attrs[key] = value
    grid = (n_slots, *GRID_SHAPE, 3)
    h5.create_dataset("coords", shape=(0, *grid), maxshape=(None, *grid), dtype=np.float32,
                      chunks=(COORDS_CHUNK, *grid), compression="gzip", compression_opts=4, fillvalue=NULL)
    h5.create_dataset("lattice", shape=(0, 6), maxshape=(None, 6), dtype=np.float32, chunks=(ROW_CHUNK, 6),
                      compression="gzip", shuffle=True)
    h5.create_dataset("composition", shape=(0, *GRID_SHAPE), maxshape=(None, *GRID_SHAPE), dtype=np.uint8,
                      chunks=(ROW_CHUNK, *GRID_SHAPE), compression="gzip")
    for name, dtype in (("natoms", np.int32), ("material_id", _STR), ("formula", _STR)):
        h5.create_dataset(name, shape=(0,), maxshape=(None,), dtype=dtype, chunks=(ROW_CHUNK,), compression="gzip")
    h5.create_group("properties")
    atoms = h5.create_group("atoms")
    atoms.create_dataset("z", shape=(0,), maxshape=(None,), dtype=np.uint8, chunks=(ATOM_CHUNK,), compression="gzip")
    atoms.create_dataset("frac", shape=(0, 3), maxshape=(None, 3), dtype=np.float32, chunks=(ATOM_CHUNK, 3),
                         compression="gzip", shuffle=True)
    return h5


def ensure_property(h5: h5py.File, name: str, *, integer: bool) -> h5py.Dataset:
    """The ``properties/<name>`` column, created (missing for existing rows) if absent."""
    group = h5["properties"]
    if name in group:
        return group[name]
    if "/" in name or not name:
        raise DatasetFormatError(f"invalid property name {name!r}")
    n = len(h5["natoms"])
    dtype, missing = (np.int64, INT_MISSING) if integer else (np.float64, np.nan)
    ds = group.create_dataset(name, shape=(n,), maxshape=(None,), dtype=dtype, chunks=(ROW_CHUNK,),
                              compression="gzip", fillvalue=missing)
    ds.attrs["missing_value"] = missing
    return ds


def _extend(ds: h5py.Dataset, values: np.ndarray) -> None:
    start = ds.shape[0]
    ds.resize(start + len(values), axis=0)
    if len(values):
        ds[start:] = values


def append_batch(h5: h5py.File, batch: StructureBatch) -> None:
    """Append ``batch`` to an open dataset file (property columns are created as needed)."""
    for name in sorted(set(batch.properties) - set(h5["properties"])):  # check before writing anything
        raise DatasetFormatError(f"property {name!r} has no column: call ensure_property first")
    n_slots = int(h5.attrs["L"])
    n_before = len(h5["natoms"])
    _extend(h5["coords"], batch.coords(n_slots))
    _extend(h5["lattice"], batch.lattice.astype(np.float32))
    _extend(h5["composition"], batch.composition().astype(np.uint8))
    _extend(h5["natoms"], batch.natoms.astype(np.int32))
    _extend(h5["material_id"], np.array(batch.material_id, dtype=object))
    _extend(h5["formula"], np.array(batch.formula, dtype=object))
    _extend(h5["atoms/z"], batch.numbers.astype(np.uint8))
    _extend(h5["atoms/frac"], batch.frac.astype(np.float32))
    for name, ds in h5["properties"].items():
        values = batch.properties.get(name)
        if values is None:
            values = np.full(len(batch), ds.attrs["missing_value"], dtype=ds.dtype)
        elif np.issubdtype(ds.dtype, np.integer):
            values = np.where(np.isnan(values), INT_MISSING, values).astype(np.int64)
        ds.resize(n_before + len(batch), axis=0)
        ds[n_before:] = values
    h5.attrs["n_committed"] = n_before + len(batch)


def write_structures(path: str | Path, structures: Sequence, *, n_slots: int = 20,
                     material_ids: Sequence[str] | None = None,
                     properties: Mapping[str, Sequence[float]] | None = None, source: str = "python") -> None:
    """Write ``structures`` (Atoms or Structures) to a new dataset file at ``path`` (float properties)."""
    batch = batch_from_structures(structures, n_slots=n_slots, material_ids=material_ids, properties=properties)
    with create_file(path, n_slots=n_slots, source=[source]) as h5:
        for name in batch.properties:
            ensure_property(h5, name, integer=False)
        append_batch(h5, batch)


# ----------------------------------------------------------------------------------------------- reading


def open_file(path: str | Path, **kwargs) -> h5py.File:
    """Open a dataset file read-only, checking that it is one."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such dataset file: {path}")
    h5 = h5py.File(path, "r", **kwargs)
    if h5.attrs.get("format") != FORMAT_NAME:
        h5.close()
        raise DatasetFormatError(f"{path} is not a {FORMAT_NAME} file (no format attribute)")
    if int(h5.attrs["format_version"]) > FORMAT_VERSION:
        h5.close()
        raise DatasetFormatError(f"{path} has format version {h5.attrs['format_version']}; this tool reads "
                                 f"up to {FORMAT_VERSION}")
    return h5


def _strings(ds: h5py.Dataset, sl: slice = slice(None)) -> list[str]:
    return [s for s in ds.asstr()[sl]]


def read_batch(h5: h5py.File, start: int = 0, stop: int | None = None) -> StructureBatch:
    """Rows ``start:stop`` of an open dataset file as a :class:`StructureBatch`."""
    natoms_all = h5["natoms"]
    stop = len(natoms_all) if stop is None else min(stop, len(natoms_all))
    natoms = natoms_all[:].astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(natoms)])
    a, b = int(offsets[start]), int(offsets[stop])
    return StructureBatch(
        natoms=natoms[start:stop], lattice=h5["lattice"][start:stop].astype(np.float64),
        numbers=h5["atoms/z"][a:b].astype(np.int64), frac=h5["atoms/frac"][a:b],
        material_id=_strings(h5["material_id"], slice(start, stop)),
        formula=_strings(h5["formula"], slice(start, stop)),
        properties={k: v[start:stop] for k, v in h5["properties"].items()},
    )


def read_atoms(path: str | Path, indices: Sequence[int] | None = None) -> list:
    """Decode structures of a dataset file into ``ase.Atoms`` (all, or ``indices``); ``info`` has the id."""

    with open_file(path) as h5:
        batch = read_batch(h5)
        n_slots = int(h5.attrs["L"])
    offsets = np.concatenate([[0], np.cumsum(batch.natoms)])
    out = []
    for i in range(len(batch)) if indices is None else indices:
        sl = slice(offsets[i], offsets[i + 1])
        coords = dense_coords(batch.natoms[i:i + 1], batch.numbers[sl], batch.frac[sl], n_slots=n_slots)[0]
        atoms = decode(coords, batch.lattice[i])
        atoms.info["material_id"] = batch.material_id[i]
        for k, v in batch.properties.items():
            atoms.info[k] = v[i].item()
        out.append(atoms)
    return out


def read_ids(path: str | Path) -> list[str]:
    """The ``material_id`` column of a dataset file."""
    with open_file(path) as h5:
        return _strings(h5["material_id"])


def history(h5: h5py.File) -> list[dict]:
    """The conversion runs recorded in a file's ``history`` attribute."""
    return json.loads(h5.attrs.get("history", "[]"))


def describe(path: str | Path, *, top: int = 118) -> str:
    """Text summary of a dataset file: count, atoms-per-cell and element histograms, properties, history."""

    with open_file(path) as h5:
        n, n_slots = len(h5["natoms"]), int(h5.attrs["L"])
        natoms = h5["natoms"][:]
        composition = h5["composition"][:] if n else np.zeros((0, *GRID_SHAPE), np.uint8)
        properties = {k: v[:] for k, v in h5["properties"].items()}
        runs = history(h5)
        sources = json.loads(h5.attrs.get("source", "[]"))
    size = os.path.getsize(path)
    lines = [f"{path}: {n} structures, L = {n_slots}, {size / 1e6:.2f} MB ({size / max(n, 1):.0f} bytes/structure)"]
    if n:
        lines.append(f"atoms per cell: min {natoms.min()}, median {np.median(natoms):g}, max {natoms.max()}")
        values, counts = np.unique(natoms, return_counts=True)
        width = 40 / counts.max()
        lines += [f"  {v:4d} {c:8d} {'#' * max(1, round(c * width))}" for v, c in zip(values, counts, strict=True)]
        with_element = (composition > 0).sum(axis=0)  # (9, 18) structures containing each element
        atoms_of = composition.sum(axis=0, dtype=np.int64)  # (9, 18)
        cells = sorted(((int(with_element[r, c]), int(CELL_TO_Z[r, c]), int(atoms_of[r, c]))
                        for r, c in zip(*np.nonzero(with_element), strict=True)), key=lambda t: (-t[0], t[1]))
        lines.append(f"elements: {len(cells)} distinct; structures containing each (atoms in all):")
        lines += [f"  {z_to_symbol(z):>2s} (Z={z:3d}) {s:8d} ({a})" for s, z, a in cells[:top]]
    for name, values in properties.items():
        missing = np.isnan(values) if np.issubdtype(values.dtype, np.floating) else values == INT_MISSING
        ok = values[~missing]
        stats = f"min {ok.min():.4g}, median {np.median(ok):.4g}, max {ok.max():.4g}" if len(ok) else "all missing"
        lines.append(f"property {name} ({values.dtype}): {len(ok)} present; {stats}")
    lines.append(f"sources: {', '.join(sources) or '-'}")
    for run in runs:
        if "subset_of" in run:
            lines.append(f"subset {run.get('date')}: {run['size']} structures of {run['subset_of']} (seed {run.get('seed')})")
            continue
        skipped = sum(run.get("skipped", {}).values())
        lines.append(f"run {run.get('key')} {run.get('date')}: {run.get('converted')} converted, {skipped} skipped "
                     f"of {run.get('records')} records")
    return "\n".join(lines)

