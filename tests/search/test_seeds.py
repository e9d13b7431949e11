"""Seed contract: ids, derived seeds, spec parsing, prefix-stable mixing and fallback."""

from __future__ import annotations

import warnings
from collections import Counter

import numpy as np
import pytest
from ase import Atoms

from ase_unimat.search.seed_registry import make_seed_sources
from ase_unimat.search.seeds import (
    MixedSeedSource,
    NoSeedsForFormula,
    Seed,
    SeedSource,
    SeedSourceError,
    allocate,
    derive_seed,
    make_seed,
    parse_seed_spec,
    seed_id,
)

COUNTS = {"Mg": 2, "Si": 1, "O": 4}


class CountingSource:
    """A stand-in source that records which indices it was asked for."""

    def __init__(self, name: str, *, fail: bool = False) -> None:
        self.name = name
        self.fail = fail
        self.asked: list[int] = []

    def make(self, counts, indices, *, run_seed):
        if self.fail:
            raise NoSeedsForFormula(f"{self.name} cannot build this")
        self.asked += list(indices)
        return [make_seed(Atoms("H", cell=[2, 2, 2], pbc=True), counts, self.name, k, run_seed=run_seed)
                for k in indices]


def test_seed_id_and_provenance():
    assert seed_id(COUNTS, "unimat", 17) == "Mg2SiO4-unimat-000017"
    seed = make_seed(Atoms("H", cell=[2, 2, 2], pbc=True), COUNTS, "random", 3, run_seed=7, extra=1)
    assert isinstance(seed, Seed)
    assert seed.atoms.info["source"] == "random" and seed.atoms.info["index"] == 3
    assert seed.atoms.info["seed"] == derive_seed(7, "random", 3) and seed.atoms.info["extra"] == 1
    assert isinstance(CountingSource("x"), SeedSource)


def test_derive_seed_depends_on_each_part():
    base = derive_seed(0, "random", 5)
    assert base == derive_seed(0, "random", 5)
    assert len({base, derive_seed(1, "random", 5), derive_seed(0, "unimat", 5), derive_seed(0, "random", 6)}) == 4
    with pytest.raises(SeedSourceError):
        derive_seed(0, "random", -1)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("random", {"random": 1.0}),
        ("mixed:0.7", {"unimat": 0.7, "random": 0.3}),
        ("mixed", {"unimat": 0.5, "random": 0.5}),
        ("mixed:1", {"unimat": 1.0}),
        ("unimat:0.5,template:0.3,random:0.2", {"unimat": 0.5, "template": 0.3, "random": 0.2}),
        ("unimat:2, random:2", {"unimat": 0.5, "random": 0.5}),
        ("template,random", {"template": 0.5, "random": 0.5}),
    ],
)
def test_parse_seed_spec(spec, expected):
    got = parse_seed_spec(spec)
    assert list(got) == list(expected)
    assert np.allclose(list(got.values()), list(expected.values()))


@pytest.mark.parametrize("spec", ["", "bogus", "mixed:1.5", "unimat:x", "random:0", "unimat:0.5,unimat:0.5", "random:-1"])
def test_parse_seed_spec_rejects(spec):
    with pytest.raises(SeedSourceError):
        parse_seed_spec(spec)


def test_allocation_is_prefix_stable_and_proportional():
    weights = {"unimat": 0.5, "template": 0.3, "random": 0.2}
    long = allocate(weights, 200)
    for n in (1, 7, 50, 133):
        prefix = allocate(weights, n)
        assert prefix == long[:n]
        counts = Counter(prefix)
        for name, w in weights.items():
            assert abs(counts[name] - w * n) <= 1.0


def test_mixed_source_routes_indices_and_is_prefix_stable():
    sources = {"unimat": CountingSource("unimat"), "random": CountingSource("random")}
    mix = MixedSeedSource(sources=sources, weights={"unimat": 0.7, "random": 0.3})
    first = mix.make(COUNTS, range(10), run_seed=0)
    more = mix.make(COUNTS, range(20), run_seed=0)
    assert [s.id for s in first] == [s.id for s in more[:10]]
    assert Counter(s.source for s in more) == Counter({"unimat": 14, "random": 6})
    assert [s.atoms.info["index"] for s in more] == list(range(20))
    # Asking for a later block alone gives the same sources as in the full run.
    late = mix.make(COUNTS, [15, 16, 17], run_seed=0)
    assert [s.id for s in late] == [s.id for s in more[15:18]]


def test_mixed_run_falls_back_when_a_source_cannot_build_the_formula():
    mix = MixedSeedSource(
        sources={"template": CountingSource("template", fail=True), "random": CountingSource("random")},
        weights={"template": 0.5, "random": 0.5},
    )
    with pytest.warns(UserWarning, match="template"):
        seeds = mix.make(COUNTS, range(6), run_seed=0)
    assert {s.source for s in seeds} == {"random"}
    assert mix.allocation(COUNTS, 4) == ["random"] * 4
    # Another composition is not affected by the fallback of the first.
    assert set(mix.allocation({"Na": 1, "Cl": 1}, 4)) == {"template", "random"}


def test_pure_run_raises_the_sources_error():
    mix = MixedSeedSource(sources={"template": CountingSource("template", fail=True)}, weights={"template": 1.0})
    with pytest.raises(NoSeedsForFormula, match="template cannot build"):
        mix.make(COUNTS, [0], run_seed=0)


def test_all_sources_failing_is_a_clear_error():
    mix = MixedSeedSource(
        sources={"a": CountingSource("a", fail=True), "b": CountingSource("b", fail=True)}, weights={"a": 1, "b": 1}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(NoSeedsForFormula, match="no seed source can build Mg2SiO4"):
            mix.make(COUNTS, [0, 1], run_seed=0)


def test_make_seed_sources_builds_named_sources(tmp_path):
    mix = make_seed_sources("template:0.5,random:0.5", template_reference=tmp_path)
    assert set(mix.sources) == {"template", "random"}
    assert mix.sources["random"].name == "random" and mix.sources["template"].name == "template"
    with pytest.raises(SeedSourceError, match="--cell"):
        make_seed_sources("cell")


def test_make_seed_sources_with_cell_file(tmp_path):
    path = tmp_path / "Si.cell"
    path.write_text("#SPECIES=Si%NUM=4\n#MINSEP=2.0\n#VARVOL=20\n")
    mix = make_seed_sources("random", cell_spec=path)
    seeds = mix.make({"Si": 4}, [0, 1], run_seed=3)
    assert [s.source for s in seeds] == ["cell", "cell"]
    assert seeds[0].id == "Si4-cell-000000"
