"""Random subsets of a dataset file: the smaller training sets of a data-size scaling study.

:func:`random_subset` keeps ``size`` structures of a file drawn without replacement by a seeded
generator, in their original order, with every property column; the copy records where it came
from in its ``history`` (source, size, seed). ``python -c "from ase_unimat.data.subset import
random_subset; random_subset('/work/data/mp_wide.h5', '/work/data/mp_wide_20k.h5', size=20000)"``
is the 20k point of ``python -m bench scaling``.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from ase_unimat.core.atomic import atomic_path
from ase_unimat.data.hdf5 import (
    StructureBatch,
    append_batch,
    create_file,
    ensure_property,
    history,
    open_file,
    read_batch,
)


def _rows(batch: StructureBatch, keep: np.ndarray) -> StructureBatch:
    """The structures ``keep`` (sorted indices) of ``batch``."""
    offsets = np.concatenate([[0], np.cumsum(batch.natoms)])
    atoms = np.concatenate([np.arange(offsets[i], offsets[i + 1]) for i in keep]) if len(keep) else np.zeros(0, int)
    return StructureBatch(
        natoms=batch.natoms[keep], lattice=batch.lattice[keep], numbers=batch.numbers[atoms], frac=batch.frac[atoms],
        material_id=[batch.material_id[i] for i in keep], formula=[batch.formula[i] for i in keep],
        properties={name: values[keep] for name, values in batch.properties.items()},
    )


def random_subset(source: str | os.PathLike, out: str | os.PathLike, *, size: int, seed: int = 0) -> Path:
    """Write ``out``: ``size`` structures of ``source`` drawn at random (seeded), in source order.

    Parameters
    ----------
    source
        A dataset file of this package's format.
    out
        The subset file (written atomically).
    size
        Structures to keep; at most the number ``source`` holds (else ``ValueError``).
    seed
        Seed of the ``numpy`` generator that draws them.

    Returns
    -------
    Path of the written file.
    """
    out = Path(out)
    with open_file(source) as h5:
        batch = read_batch(h5)
        n_slots = int(h5.attrs["L"])
        integer = {name: np.issubdtype(ds.dtype, np.integer) for name, ds in h5["properties"].items()}
        past = history(h5)
    if not 0 < size <= len(batch):
        raise ValueError(f"a subset of {size} structures of {source}, which holds {len(batch)}")
    keep = np.sort(np.random.default_rng(seed).choice(len(batch), size=size, replace=False))
    subset = _rows(batch, keep)
    entry = {"subset_of": str(source), "size": int(size), "seed": int(seed),
             "date": datetime.now(UTC).isoformat(timespec="seconds")}
    with atomic_path(out) as tmp:
        with create_file(tmp, n_slots=n_slots, source=[str(source)],
                         attrs={"history": json.dumps([*past, entry])}) as dst:
            for name, is_integer in integer.items():
                ensure_property(dst, name, integer=is_integer)
            append_batch(dst, subset)
    return out
