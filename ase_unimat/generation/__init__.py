"""Generation: load a trained model and sample structures -- of a given composition or de novo.

Owns the user entry point :func:`generate` (``generator``), the ASE-GA start generator, and what
is decided per sample before any network call: the de novo composition prior (``compositions``),
the space-group prior of a space-group model (``spacegroups``) and their per-sample plan
(``plan``); and what ``unimat-sample`` does with its options (``sample_command``: checks, the
output format, sampling, the ``.extxyz``/``.cif``/``.res`` writes). May import core, data and
model; never training, search or evaluation (the charge-balance filter is
:mod:`ase_unimat.core.chemistry`).
"""

from ase_unimat.generation.generator import (
    DEFAULT_SAMPLER,
    DEFAULT_STEPS,
    UniMatStartGenerator,
    composition_for,
    generate,
    grid_cell,
    load_model,
    resolve_device,
)

__all__ = ["DEFAULT_SAMPLER", "DEFAULT_STEPS", "UniMatStartGenerator", "composition_for", "generate", "grid_cell",
           "load_model", "resolve_device"]
