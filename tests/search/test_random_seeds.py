"""Random AIRSS-like seeds: determinism, MINSEP, volume, symmetry, SLACK/OVERLAP and clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import spglib

from ase_unimat.search.random_seeds import (
    ImpossibleSeedError,
    RandomSeedOptions,
    RandomSeedSource,
    random_structure,
)
from ase_unimat.search.seeds import NoSeedsForFormula, SeedSourceError
from ase_unimat.search.spacegroups import SpaceGroupLibrary
from ase_unimat.search.volume import estimate_volume

COUNTS = {"Mg": 2, "Si": 1, "O": 4}


@pytest.fixture(scope="module")
def groups() -> SpaceGroupLibrary:
    return SpaceGroupLibrary()


def min_pair_distances(atoms) -> dict[tuple[str, str], float]:
    """Shortest distance of each element pair, including periodic images (and an atom's own images)."""
    from ase.neighborlist import neighbor_list

    i, j, d = neighbor_list("ijd", atoms, 6.0)
    symbols = np.array(atoms.get_chemical_symbols())
    out: dict[tuple[str, str], float] = {}
    for a, b, dist in zip(symbols[i], symbols[j], d, strict=True):
        key = tuple(sorted((a, b)))
        out[key] = min(out.get(key, np.inf), dist)
    return out


def test_same_run_seed_and_index_give_the_same_seed():
    source = RandomSeedSource()
    a = source.make(COUNTS, [0, 1, 5], run_seed=11)
    b = RandomSeedSource().make(COUNTS, [5], run_seed=11)
    assert np.array_equal(a[2].atoms.positions, b[0].atoms.positions)
    assert np.array_equal(a[2].atoms.cell[:], b[0].atoms.cell[:])
    assert a[2].atoms.get_chemical_symbols() == b[0].atoms.get_chemical_symbols()
    assert not np.allclose(a[0].atoms.cell[:], a[1].atoms.cell[:])
    other = RandomSeedSource().make(COUNTS, [5], run_seed=12)
    assert not np.allclose(other[0].atoms.cell[:], b[0].atoms.cell[:])
    assert a[0].id == "Mg2SiO4-random-000000" and a[0].atoms.info["source"] == "random"


def test_composition_and_default_volume():
    options = RandomSeedOptions()
    target = estimate_volume(COUNTS)
    for k in range(10):
        atoms = random_structure(COUNTS, options=options, rng=np.random.default_rng(k))
        assert sorted(atoms.get_chemical_symbols()) == sorted(["Mg"] * 2 + ["Si"] + ["O"] * 4)
        assert 0.95 * target - 1e-9 <= atoms.get_volume() <= 1.05 * target + 1e-9


@pytest.mark.parametrize("symmops", [None, (2, 4)])
def test_minsep_is_honoured_globally_and_per_pair(symmops, groups):
    options = RandomSeedOptions(minsep=1.5, pair_minsep={("O", "O"): 2.4, ("Mg", "O"): 1.9}, volume_per_atom=(12.0, 12.0),
                                symmops=symmops)
    for k in range(12):
        atoms = random_structure(COUNTS, options=options, rng=np.random.default_rng(k), groups=groups)
        dists = min_pair_distances(atoms)
        for pair, d in dists.items():
            assert d >= options.minsep_of(*pair) - 1e-6, (k, pair, d)


def test_target_volume_honoured_within_varvol():
    options = RandomSeedOptions(volume_per_atom=(10.0, 10.0), volume_spread=0.1, minsep=1.2)
    volumes = [random_structure(COUNTS, options=options, rng=np.random.default_rng(k)).get_volume() for k in range(20)]
    assert min(volumes) >= 63.0 - 1e-6 and max(volumes) <= 77.0 + 1e-6
    assert max(volumes) - min(volumes) > 3.0  # it does vary
    ranged = RandomSeedOptions(volume_per_atom=(8.0, 9.0), minsep=1.0)
    for k in range(10):
        assert 56.0 - 1e-6 <= random_structure(COUNTS, options=ranged, rng=np.random.default_rng(k)).get_volume() <= 63.0 + 1e-6


@pytest.mark.parametrize(("counts", "symmops"), [(COUNTS, (2, 4)), ({"Si": 8}, (4, 8)), ({"Na": 4, "Cl": 4}, (8, 48))])
def test_symmetric_seeds_have_composition_and_symmetry(counts, symmops, groups):
    options = RandomSeedOptions(symmops=symmops, minsep=1.2)
    for k in range(6):
        atoms = random_structure(counts, options=options, rng=np.random.default_rng(k), groups=groups)
        assert {s: atoms.get_chemical_symbols().count(s) for s in counts} == counts
        dataset = spglib.get_symmetry_dataset((atoms.cell[:], atoms.get_scaled_positions(), atoms.numbers), symprec=1e-3)
        assert len(dataset.rotations) >= symmops[0], (k, dataset.number)
        assert atoms.info["n_symmops"] >= symmops[0]


def test_space_group_orbit_sizes_are_the_wyckoff_multiplicities(groups):
    halls = groups.hall_numbers()
    assert sorted(groups.group(halls[14]).multiplicities) == [2, 4]  # P2_1/c: 2a-2d, 4e
    assert sorted(groups.group(halls[221]).multiplicities) == [1, 3, 6, 8, 12, 24, 48]  # Pm-3m


def test_no_space_group_for_the_counts_is_a_clear_error(groups):
    # The 192-operation groups (Fm-3m, Fd-3m, ...) have no orbit smaller than 4: one Si cannot be placed.
    with pytest.raises(NoSeedsForFormula, match="no space group"):
        random_structure({"Si": 1, "O": 2}, options=RandomSeedOptions(symmops=(192, 192)),
                         rng=np.random.default_rng(0), groups=groups)


def test_impossible_minsep_fails_fast_with_a_clear_error():
    options = RandomSeedOptions(minsep=4.0, volume_per_atom=(10.0, 10.0))
    with pytest.raises(ImpossibleSeedError, match="impossible MINSEP"):
        random_structure({"Si": 8}, options=options, rng=np.random.default_rng(0))


def test_hard_minsep_gives_up_after_max_attempts():
    # Dense but below the packing bound: random placement cannot reach it, so the retry limit applies.
    options = RandomSeedOptions(minsep=2.3, volume_per_atom=(10.0, 10.0), max_attempts=5, tries_per_atom=20)
    with pytest.raises(ImpossibleSeedError, match="after 5 attempts"):
        random_structure({"Si": 8}, options=options, rng=np.random.default_rng(0))


def test_slack_push_reaches_overlap_tolerance():
    minsep = 2.2
    options = RandomSeedOptions(minsep=minsep, volume_per_atom=(12.0, 12.0), slack=0.25, overlap=0.1)
    for k in range(5):
        atoms = random_structure({"Si": 8}, options=options, rng=np.random.default_rng(k))
        assert min(min_pair_distances(atoms).values()) >= (1 - 0.1) * minsep - 1e-6


def test_fixed_cell():
    cell = ((4.0, 0.0, 0.0), (0.0, 4.0, 0.0), (0.0, 0.0, 4.0))
    atoms = random_structure({"Al": 4}, options=RandomSeedOptions(cell=cell, minsep=2.0), rng=np.random.default_rng(0))
    assert np.allclose(atoms.cell[:], cell)


@pytest.mark.parametrize(
    "kwargs", [{"slack": 1.0}, {"overlap": -0.1}, {"minsep": -1.0}, {"volume_per_atom": (5.0, 2.0)}, {"symmops": (4, 2)}]
)
def test_bad_options_are_rejected(kwargs):
    with pytest.raises(SeedSourceError):
        RandomSeedOptions(**kwargs)


def test_random_sym_source_builds_symmetric_seeds_and_falls_back_to_p1():
    from ase_unimat.search.seed_registry import make_seed_sources

    source = make_seed_sources("random-sym")
    seeds = source.make({"Al": 4, "O": 6}, range(4), run_seed=0)
    assert {s.source for s in seeds} == {"random-sym"}
    assert all(2 <= s.atoms.info["n_symmops"] <= 4 for s in seeds)
    again = make_seed_sources("random-sym").make({"Al": 4, "O": 6}, [2], run_seed=0)[0]
    assert np.allclose(again.atoms.positions, seeds[2].atoms.positions)  # seed k from (run seed, source, k)
    plain = make_seed_sources("random").make({"Al": 4, "O": 6}, [2], run_seed=0)[0]
    assert not np.allclose(plain.atoms.cell.lengths(), seeds[2].atoms.cell.lengths())
    from ase_unimat.search.random_seeds import RandomSeedOptions, RandomSeedSource

    cubic = RandomSeedSource(options=RandomSeedOptions(symmops=(192, 192)), name="random-sym", p1_fallback=True)
    assert not cubic._groups.candidates([7], (192, 192))  # no face-centred cubic orbits add up to 7 atoms
    seed = cubic.make({"Cu": 7}, [0], run_seed=0)[0]
    assert seed.atoms.info["symmetry_fallback"] is True and len(seed.atoms) == 7
