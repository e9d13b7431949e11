"""ase-unimat: crystal-structure search seeded by a UniMat diffusion model.

The package is split by layer, in pipeline order (see ARCHITECTURE.md): ``core`` (periodic table,
formula, representation), ``data`` (HDF5 datasets and conversion), ``model`` (networks, diffusion,
samplers, checkpoints), ``training``, ``generation`` (``generate``), ``search`` (``Search``) and
``evaluation``. ``from ase_unimat import generate, Search`` are the two entry points for scripts.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# Imported on first use (PEP 562) so that `import ase_unimat` stays light: no torch, no pymatgen.
_LAZY = {
    "generate": "ase_unimat.generation",
    "load_model": "ase_unimat.generation",
    "UniMatStartGenerator": "ase_unimat.generation",
    "Search": "ase_unimat.search.search",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ase_unimat' has no attribute {name!r}")
