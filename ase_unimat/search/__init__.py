"""Relax-and-rank structure search: seeds, calculators, relaxation, AIRSS I/O, ranking.

Owns everything between a formula and a ranked table of relaxed cells: the seed contract and its
registry (``seeds``, ``seed_registry``), the four seed sources (``random_seeds`` with
``random_seed_options``, ``random_placement`` and its space-group library ``spacegroups``,
``buildcell``, ``unimat_seeds``, ``template_seeds`` over ``templates``, ``ordered_templates`` and
``template_fingerprint``), ``symmetry``, ``volume``, calculators (the one place they enter,
``calculators``, with ``calc_options``, ``calc_factory``, ``calc_espresso`` and ``calc_errors``),
``relax``, the relaxation pool (``pool``, ``relax_cache``), the run ``store``, ``rank``, AIRSS
``.res`` I/O (``airss_io``, ``buildcell``), the PNG ``report``, and the ``Search`` loop (``search``,
with ``search_options``, ``search_seeds``) and its second level ``refine``. It may import ``core``,
``data``, ``model.bundled`` and ``generation`` (which loads torch only when sampling); never
``training``, ``evaluation``, ``bench`` or ``cli``.
"""

from __future__ import annotations

import importlib


def __getattr__(name: str):
    # `ase_unimat.search.Search` without importing the whole search stack when a submodule is wanted.
    if name == "Search":
        return importlib.import_module("ase_unimat.search.search").Search
    raise AttributeError(f"module 'ase_unimat.search' has no attribute {name!r}")
