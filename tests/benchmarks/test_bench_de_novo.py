"""The de novo and guidance benchmarks' small parts: space-group measurement and the de novo table."""

from __future__ import annotations

import sys as _sys
from pathlib import Path as _Path

import pytest
from ase.build import bulk

_REPO = str(_Path(__file__).resolve().parents[2])  # bench/ is not installed: import it from the checkout
_sys.path.insert(0, _REPO)
try:
    from bench._symmetry import crystal_system, spacegroup_number
    from bench.bench_de_novo import ANCHORS, summary_markdown
finally:
    _sys.path.remove(_REPO)


@pytest.mark.parametrize(("number", "system"), [(1, "triclinic"), (14, "monoclinic"), (62, "orthorhombic"),
                                                 (139, "tetragonal"), (166, "trigonal"), (194, "hexagonal"),
                                                 (225, "cubic")])  # fmt: skip
def test_crystal_system(number, system):
    assert crystal_system(number) == system


def test_spacegroup_number_tolerates_small_noise():
    atoms = bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    assert spacegroup_number(atoms) == 225
    atoms.rattle(stdev=0.01, seed=0)  # well below symprec 0.1
    assert spacegroup_number(atoms) == 225
    atoms.positions[0] += [0.4, 0.3, 0.2]
    assert spacegroup_number(atoms) == 1


def test_table_has_ours_and_the_anchors():
    generation = {"struct_valid": 0.95, "comp_valid": 0.8, "cov_recall": 0.9, "cov_precision": 0.85,
                  "wdist_density": 0.5, "wdist_num_elems": 0.2}  # fmt: skip
    result = {"n_samples": 10, "sampler": "ancestral", "steps": 20, "spacegroup_mode": "none",
              "reference_set": {"n": 5}, "command": "python -m bench de_novo", "model": {"name": "tiny"},
              "generation": generation, "stability": {"skipped": "n_stability = 0"}, "anchors": ANCHORS}  # fmt: skip
    table = summary_markdown(result)
    assert "| **tiny (ours)** | 95.0 | 80.0 | 90.0 | 85.0 | 0.500 | 0.200 |" in table
    assert "| UniMat (paper) | 97.2 | 89.4 | 99.8 | 99.7 | - | - |" in table
