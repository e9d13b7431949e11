"""Template seed source: ranking order, cycling with perturbations, fallback in mixed runs."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from ase.build import bulk

from ase_unimat.search.seed_registry import make_seed_sources
from ase_unimat.search.template_seeds import TemplateSeedSource
from ase_unimat.search.templates import NoTemplateError, TemplateIndex

KBR = {"K": 1, "Br": 1}


@pytest.fixture
def index() -> TemplateIndex:
    structures = [bulk("NaCl", "rocksalt", a=5.64), bulk("CsCl", "cesiumchloride", a=4.12), bulk("ZnS", "zincblende", a=5.41)]
    return TemplateIndex.from_atoms(structures, ["nacl", "cscl", "zns"])


def test_first_seeds_are_the_ranked_candidates(index):
    source = TemplateSeedSource(reference=index)
    candidates = index.candidates(KBR)
    seeds = source.make(KBR, range(len(candidates)), run_seed=5)
    for seed, candidate in zip(seeds, candidates, strict=True):
        assert seed.source == "template" and seed.atoms.info["template_id"] == candidate.material_id
        assert np.allclose(seed.atoms.positions, candidate.atoms.positions)
        assert seed.atoms.info["template_cycle"] == 0
    assert [s.id for s in seeds] == [f"KBr-template-{k:06d}" for k in range(3)]


def test_cycling_perturbs_deterministically(index):
    source = TemplateSeedSource(reference=index)
    n = len(index.candidates(KBR))
    again = source.make(KBR, [n, n + 1], run_seed=5)
    assert again[0].atoms.info["template_cycle"] == 1 and again[0].atoms.info["template_rank"] == 0
    first = source.make(KBR, [0], run_seed=5)[0]
    assert not np.allclose(again[0].atoms.cell[:], first.atoms.cell[:])
    assert abs(again[0].atoms.get_volume() / first.atoms.get_volume() - 1) < 0.2
    repeat = TemplateSeedSource(reference=index).make(KBR, [n], run_seed=5)[0]
    assert np.array_equal(repeat.atoms.positions, again[0].atoms.positions)
    other_run = TemplateSeedSource(reference=index).make(KBR, [n], run_seed=6)[0]
    assert not np.allclose(other_run.atoms.positions, again[0].atoms.positions)


def test_exclude_ids(index):
    seeds = TemplateSeedSource(reference=index, exclude_ids=["nacl"]).make(KBR, [0, 1], run_seed=0)
    assert [s.atoms.info["template_id"] for s in seeds] == ["cscl", "zns"]


def test_pure_template_run_without_template_raises(index):
    with pytest.raises(NoTemplateError, match="no template for Mg2SiO4"):
        make_seed_sources("template", template_reference=index).make({"Mg": 2, "Si": 1, "O": 4}, [0], run_seed=0)


def test_mixed_run_falls_back_to_random_when_no_template_fits(index):
    mix = make_seed_sources("template:0.5,random:0.5", template_reference=index)
    counts = {"Mg": 2, "Si": 1, "O": 4}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        seeds = mix.make(counts, range(4), run_seed=0)
    assert {s.source for s in seeds} == {"random"}
    assert any("template" in str(w.message) for w in caught)
    # A formula with templates keeps its template share.
    assert {s.source for s in mix.make(KBR, range(4), run_seed=0)} == {"template", "random"}


def test_reference_from_a_file_path(index, tmp_path):
    from ase_unimat.data.hdf5 import write_structures

    path = tmp_path / "ref.h5"
    write_structures(path, [bulk("NaCl", "rocksalt", a=5.64)], material_ids=["nacl"])
    seeds = TemplateSeedSource(reference=str(path)).make(KBR, [0], run_seed=0)
    assert seeds[0].atoms.info["template_id"] == "nacl"
