"""A relaxation cache on disk, keyed by what decides a relaxation: the structure and the settings.

``<root>/<sha256>.json`` holds one ``RelaxResult.to_dict()``. The key (:func:`cache_key`) hashes
the calculator spec, ``fmax``, ``max_steps``, ``time_limit`` and the structure's content (atomic
numbers, cell and Cartesian positions rounded to 1e-6 Å), never a job's name, so one structure under
two names shares one entry. The pressure and optimizer do not enter (the benchmarks that fill it use
the defaults); the key must stay as it is for the committed caches to keep serving.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms

from ase_unimat.core.atomic import atomic_write_text
from ase_unimat.search.relax import RelaxResult, RelaxTask


def cache_key(atoms: Atoms, *, calculator: str, fmax: float, max_steps: int, time_limit: float | None) -> str:
    """SHA-256 hex digest of what decides a relaxation: the settings and the structure's content.

    Atomic numbers, cell and Cartesian positions (rounded to 1e-6 Å) enter, never the job's name,
    so the same structure under two names shares one entry and a changed seed generator misses.
    """
    content = {
        "calculator": str(calculator),
        "fmax": float(fmax),
        "max_steps": int(max_steps),
        "time_limit": None if time_limit is None else float(time_limit),
        "numbers": np.asarray(atoms.numbers).tolist(),
        "cell": np.rint(np.asarray(atoms.cell.array) * 1e6).astype(np.int64).tolist(),  # (3, 3) in 1e-6 Å
        "positions": np.rint(np.asarray(atoms.positions) * 1e6).astype(np.int64).tolist(),  # (N, 3) in 1e-6 Å
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True)
class RelaxCache:
    """Finished relaxations on disk: ``<root>/<cache key>.json`` holds one ``RelaxResult.to_dict()``."""

    root: Path

    def path(self, key: str) -> Path:
        """The file of one cache key."""
        return self.root / f"{key}.json"

    def key(self, task: RelaxTask) -> str:
        """The cache key of a task: :func:`cache_key` of its structure, calculator spec and limits."""
        settings = task.settings
        return cache_key(task.atoms, calculator=str(task.calculator), fmax=settings.fmax,
                         max_steps=settings.max_steps, time_limit=settings.time_limit)  # fmt: skip

    def get(self, key: str) -> RelaxResult | None:
        """The cached ``RelaxResult`` of ``key``, or ``None`` when there is none (or it is unreadable)."""
        try:
            return RelaxResult.from_dict(json.loads(self.path(key).read_text()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):  # damaged or foreign file: relax again, overwrite
            return None

    def put(self, key: str, result: RelaxResult) -> None:
        """Store ``result`` under ``key`` atomically (temporary file, then ``os.replace``)."""
        atomic_write_text(self.path(key), json.dumps(result.to_dict()))
