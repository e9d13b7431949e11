"""The de novo and guidance benchmarks' small parts: space-group measurement and the de novo table."""

from __future__ import annotations

import pytest
from ase.build import bulk


@pytest.fixture
def symmetry(bench_module):
    return bench_module("bench._symmetry")


@pytest.fixture
def de_novo(bench_module):
    return bench_module("bench.bench_de_novo")


@pytest.mark.parametrize(("number", "system"), [(1, "triclinic"), (14, "monoclinic"), (62, "orthorhombic"),
                                                 (139, "tetragonal"), (166, "trigonal"), (194, "hexagonal"),
                                                 (225, "cubic")])  # fmt: skip
def test_crystal_system(number, system, symmetry):
    assert symmetry.crystal_system(number) == system


def test_spacegroup_number_tolerates_small_noise(symmetry):
    atoms = bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    assert symmetry.spacegroup_number(atoms) == 225
    atoms.rattle(stdev=0.01, seed=0)  # well below symprec 0.1
    assert symmetry.spacegroup_number(atoms) == 225
    atoms.positions[0] += [0.4, 0.3, 0.2]
    assert symmetry.spacegroup_number(atoms) == 1


def test_table_has_ours_and_the_anchors(de_novo):
    generation = {"struct_valid": 0.95, "comp_valid": 0.8, "cov_recall": 0.9, "cov_precision": 0.85,
                  "wdist_density": 0.5, "wdist_num_elems": 0.2}  # fmt: skip
    result = {"n_samples": 10, "sampler": "ancestral", "steps": 20, "spacegroup_mode": "none",
              "reference_set": {"n": 5}, "command": "python -m bench de_novo", "model": {"name": "tiny"},
              "generation": generation, "stability": {"skipped": "n_stability = 0"}, "anchors": de_novo.ANCHORS}  # fmt: skip
    table = de_novo.summary_markdown(result)
    assert "| **tiny (ours)** | 95.0 | 80.0 | 90.0 | 85.0 | 0.500 | 0.200 |" in table
    assert "| UniMat (paper) | 97.2 | 89.4 | 99.8 | 99.7 | - | - |" in table
