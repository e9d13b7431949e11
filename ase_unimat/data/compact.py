"""Compact copies of a dataset file: the sparse atoms only, for the reference set shipped beside a model.

A shipped model's ``reference.h5`` (its training structures: the template source's reference, the
space-group prior of ``spacegroup="auto"``, novelty in the benchmarks) is read through ``atoms/*``,
``lattice``, ``natoms``, ``composition``, ``material_id``, ``formula`` and ``properties/*``; nobody
reads its dense ``coords`` (166 bytes per structure of the 350, see :mod:`ase_unimat.data.hdf5`).
:func:`compact_copy` writes the same file without them (the 77,769-structure ``mp_wide.h5``:
26.7 MB -> 13.6 MB); the root attribute ``compact = True`` says so, and every reader of this
package that needs a dense tensor builds it from ``atoms/*``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import h5py

from ase_unimat.core.atomic import atomic_path
from ase_unimat.data.hdf5 import open_file

DENSE = "coords"


def compact_copy(source: str | os.PathLike, out: str | os.PathLike, *,
                 properties: Sequence[str] | None = None) -> Path:  # fmt: skip
    """Write ``out``: ``source`` without the dense ``coords`` (and only ``properties``, if given).

    Parameters
    ----------
    source
        A dataset file of this package's format.
    out
        The compact file (written atomically: a crash leaves no half file).
    properties
        Property columns to keep (None: all of them); an unknown name raises ``KeyError``.

    Returns
    -------
    Path of the written file.
    """
    out = Path(out)
    with open_file(source) as h5:
        names = list(h5["properties"]) if properties is None else list(properties)
        missing = [name for name in names if name not in h5["properties"]]
        if missing:
            raise KeyError(f"{source} has no property {missing[0]!r}; it has {sorted(h5['properties'])}")
        with atomic_path(out) as tmp, h5py.File(tmp, "w") as dst:
            for key, value in h5.attrs.items():
                dst.attrs[key] = value
            dst.attrs["compact"] = True
            for name in h5:
                if name not in (DENSE, "properties"):
                    h5.copy(name, dst)
            group = dst.create_group("properties")
            for name in names:
                h5.copy(f"properties/{name}", group)
    return out
