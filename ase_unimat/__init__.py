"""ase-unimat: crystal-structure search seeded by a UniMat diffusion model."""

from __future__ import annotations

import importlib
import sys
import types

__version__ = "0.1.0"

# Imported on first use so that `import ase_unimat` stays light (no torch).
_LAZY = {
    "generate": "ase_unimat.generate",
    "load_model": "ase_unimat.generate",
    "UniMatStartGenerator": "ase_unimat.generate",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ase_unimat' has no attribute {name!r}")


class _Package(types.ModuleType):
    """Keeps ``ase_unimat.generate`` the function although a submodule of that name exists.

    Importing a submodule makes Python ``setattr`` it on the package; for the lazily exported
    names that would shadow the function with the module, so those assignments are skipped.
    """

    def __setattr__(self, name: str, value) -> None:
        if name in _LAZY and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
