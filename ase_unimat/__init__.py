"""ase-unimat: crystal-structure search seeded by a UniMat diffusion model."""

from __future__ import annotations

__version__ = "0.1.0"
