"""The model-quality benchmark's data and draws: the mp_20 test set, the seeded subsets and the sample seeds.

It owns :func:`load_test_set` (a given CSV or HDF5, else ``$UNIMAT_TEST_H5``, else the shared
``mp_20/test.csv.gz`` read with the converter's readers), :func:`seeded_subset` (the structures
sampled ``k`` times, the stability subset) and :func:`sample_seed` (the seed of sample ``j`` of test
structure ``i``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench._model_quality_settings import MAX_K

TEST_CSV = "mp_20/test.csv.gz"  # under the shared data folder
TEST_H5_VARIABLE = "UNIMAT_TEST_H5"  # a prebuilt HDF5 of mp_20/test used instead when set


def load_test_set(path: Path | str | None = None) -> tuple[list[Any], str]:
    """The mp_20 test structures as ``ase.Atoms`` (``info["material_id"]``) and where they came from.

    ``path`` (a CSV or the converter's HDF5), else ``$UNIMAT_TEST_H5``, else
    ``<shared data>/mp_20/test.csv.gz`` read with the converter's readers.
    """
    from ase_unimat.evaluation.reference import default_data_dir

    path = Path(path) if path is not None else None
    if path is None and os.environ.get(TEST_H5_VARIABLE):
        path = Path(os.environ[TEST_H5_VARIABLE])
    path = path or default_data_dir() / TEST_CSV
    if not path.exists():
        raise FileNotFoundError(f"mp_20 test set {path} not found (set UNIMAT_SHARED_DATA or {TEST_H5_VARIABLE})")
    if path.suffix in (".h5", ".hdf5"):
        from ase_unimat.data.hdf5 import read_atoms

        return read_atoms(path), str(path)
    from pymatgen.io.ase import AseAtomsAdaptor

    from ase_unimat.data.readers import iter_records
    from ase_unimat.data.records import RecordError

    structures = []
    for record in iter_records(path):
        item = record.structure_or_error
        if isinstance(item, RecordError):
            raise ValueError(f"{path}: record {record.record_id} cannot be read: {item}")
        atoms = item if hasattr(item, "get_chemical_symbols") else AseAtomsAdaptor.get_atoms(item)
        atoms.info["material_id"] = record.record_id
        structures.append(atoms)
    return structures, str(path)


def seeded_subset(candidates: Sequence[int], n: int | None, *, seed: int, salt: int) -> list[int]:
    """``n`` of ``candidates`` drawn without replacement (all when ``n`` is None or too large), sorted."""
    import numpy as np

    candidates = list(candidates)
    if n is None or n >= len(candidates):
        return candidates
    rng = np.random.default_rng([seed, salt])
    return sorted(candidates[i] for i in rng.choice(len(candidates), size=n, replace=False))


def sample_seed(seed: int, index: int, j: int) -> int:
    """Seed of sample ``j`` of test structure ``index``."""
    return seed * 1_000_000 + index * MAX_K + j
