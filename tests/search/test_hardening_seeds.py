"""Hardening of seed files and random seeds (issue 16, items 9 and 12).

A ``.cell`` file with an infinite volume or a huge atom count is refused at once with a
:class:`CellFileError` (a ValueError, one line in the CLI); symmetric random seeds keep the
acceptance rule the module promises; ``shortest_distance`` works in bounded memory.
"""

from __future__ import annotations

import time
import tracemalloc

import numpy as np
import pytest
from ase import Atoms
from ase.neighborlist import neighbor_list

from ase_unimat.search.buildcell import CellFileError, parse_cell
from ase_unimat.search.random_seeds import RandomSeedOptions, random_structure
from ase_unimat.search.seeds import SeedSourceError
from ase_unimat.search.spacegroups import SpaceGroupLibrary

# ------------------------------------------------------------------------------ item 9: .cell sizes


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e400", "10-inf"])
def test_non_finite_target_volume_is_a_cell_file_error(value):
    with pytest.raises(CellFileError, match="TARGVOL"):
        parse_cell(f"#SPECIES=Cu%NUM=4\n#TARGVOL={value}\n")


def test_non_finite_volume_option_is_refused():
    with pytest.raises(SeedSourceError, match="finite"):
        RandomSeedOptions(volume_per_atom=(10.0, float("inf")))
    with pytest.raises(SeedSourceError, match="finite"):
        RandomSeedOptions(minsep=float("inf"))


def test_atom_count_beyond_the_maximum_is_refused_at_once():
    from ase_unimat.search.random_seeds import MAX_ATOMS

    assert MAX_ATOMS == 1000
    start = time.perf_counter()
    with pytest.raises(CellFileError, match="at most 1000"):
        parse_cell("#SPECIES=Cu%NUM=100000\n")
    with pytest.raises(CellFileError, match="at most 1000"):
        parse_cell("#SPECIES=Cu%NUM=600,O%NUM=600\n")
    with pytest.raises(CellFileError, match="at most 1000"):
        parse_cell("#SPECIES=Cu%NUM=10\n", nform=101)
    with pytest.raises(SeedSourceError, match="at most 1000"):
        random_structure({"Cu": 100000}, rng=np.random.default_rng(0))
    assert time.perf_counter() - start < 2.0
    assert sum(parse_cell("#SPECIES=Cu%NUM=10\n", nform=100).counts.values()) == 1000


# ------------------------------------------------------------------------------ item 9: shortest_distance


def test_shortest_distance_works_in_bounded_memory():
    from ase_unimat.core.geometry import shortest_distance

    rng = np.random.default_rng(9)
    n = 600
    atoms = Atoms("Cu" * n, scaled_positions=rng.random((n, 3)), cell=[[18.0, 0, 0], [3.0, 17.0, 0], [2.0, 1.0, 16.0]],
                  pbc=True)
    tracemalloc.start()
    try:
        distance = shortest_distance(atoms)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert distance == pytest.approx(neighbor_list("d", atoms, 3.0).min(), abs=1e-10)
    assert peak < 64e6, f"peak {peak / 1e6:.0f} MB"  # the dense (N, N, 27, 3) array alone is 233 MB


# ------------------------------------------------------------------------------ item 12: symmetric MINSEP


AL2O3 = "#SPECIES=Al%NUM=2,O%NUM=3\n#TARGVOL=25\n#SYMMOPS=2-4\n#SLACK=0.25\n#OVERLAP=0.1\n" \
        "#MINSEP=1.5 Al-Al=2.5 Al-O=1.7 O-O=2.4\n"


def violations(atoms: Atoms, options: RandomSeedOptions) -> list[tuple[str, str, float]]:
    """Pairs closer than the acceptance floor ``(1 - overlap) * minsep``."""
    symbols = atoms.get_chemical_symbols()
    i, j, d = neighbor_list("ijd", atoms, 3.0)
    return [(symbols[a], symbols[b], float(x)) for a, b, x in zip(i, j, d, strict=True)
            if x < (1.0 - options.overlap) * options.minsep_of(symbols[a], symbols[b]) - 1e-6]


def test_symmetric_seeds_satisfy_the_minsep_acceptance_rule():
    import spglib

    spec = parse_cell(AL2O3, nform=2)
    groups = SpaceGroupLibrary()
    for k in range(12):
        atoms = random_structure(spec.counts, options=spec.options, rng=np.random.default_rng(k), groups=groups)
        assert atoms.get_chemical_formula() == "Al4O6"
        assert violations(atoms, spec.options) == [], (k, atoms.info)
        cell = (atoms.cell.array, atoms.get_scaled_positions(), atoms.numbers)
        found = spglib.get_symmetry(cell, symprec=1e-3)
        assert len(found["rotations"]) >= atoms.info["n_symmops"], (k, atoms.info)
