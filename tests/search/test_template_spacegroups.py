"""The templates' space-group prior of plain UniMat sampling, and the UniMat source's spacegroup option."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk

from ase_unimat.generation.compositions import stream_rng
from ase_unimat.generation.spacegroups import SPACEGROUP_STREAM, SpacegroupPrior
from ase_unimat.search.seeds import SeedSourceError
from ase_unimat.search.template_spacegroups import TemplateSpacegroupPrior
from ase_unimat.search.templates import NoTemplateError, TemplateIndex


@pytest.fixture(scope="module")
def index() -> TemplateIndex:
    # CsCl-type (Pm-3m, 221) and rocksalt (Fm-3m, 225, primitive) with 2 atoms; fluorite CaF2 (Fm-3m) with 3
    return TemplateIndex.from_atoms([bulk("NaCl", "rocksalt", a=5.64), bulk("CsCl", "cesiumchloride", a=4.12),
                                     bulk("CaF2", "fluorite", a=5.46)], ["rocksalt", "cscl", "fluorite"])  # fmt: skip


def test_the_closest_template_weighs_most(index):
    numbers, probs, level = TemplateSpacegroupPrior(index).distribution({"Cs": 1, "Br": 1})
    assert level == "templates"
    assert numbers.tolist() == [221, 225]  # Cs -> Cs is the closer substitution: CsCl-type first
    assert probs.tolist() == pytest.approx([2 / 3, 1 / 3])
    numbers, probs, _ = TemplateSpacegroupPrior(index, top=1).distribution({"Cs": 1, "Br": 1})
    assert numbers.tolist() == [221] and probs.tolist() == [1.0]


def test_no_template_falls_back_to_the_stoichiometry_prior(index):
    fallback = SpacegroupPrior(np.zeros((2, 9, 18)) + np.eye(9, 18)[None], np.array([12, 12]), min_count=1)
    numbers, probs, level = TemplateSpacegroupPrior(index, fallback=fallback).distribution({"Cs": 1, "Br": 3})
    assert level != "templates" and numbers.tolist() == [12] and probs.tolist() == [1.0]
    with pytest.raises(NoTemplateError, match="no template for Br3Cs"):
        TemplateSpacegroupPrior(index).distribution({"Cs": 1, "Br": 3})
    with pytest.raises(ValueError, match="top must be >= 1"):
        TemplateSpacegroupPrior(index, top=0)


def test_draws_are_reproducible_per_seed_on_the_stream_of_auto(index):
    prior = TemplateSpacegroupPrior(index)
    numbers, probs, _ = prior.distribution({"K": 1, "I": 1})
    for seed in range(20):
        expected = int(stream_rng(seed, SPACEGROUP_STREAM).choice(numbers, p=probs))
        assert prior.draw({"K": 1, "I": 1}, seed) == (expected, "templates")
    assert {prior.draw({"K": 1, "I": 1}, seed)[0] for seed in range(40)} == {221, 225}


@pytest.fixture(scope="module")
def spacegroup_model():
    torch = pytest.importorskip("torch")
    from model_fixtures import tiny_config

    from ase_unimat.model.diffusion import build_model

    torch.manual_seed(0)
    return build_model(tiny_config(spacegroup_condition=True))


def test_unimat_seeds_record_the_templates_space_group(index, spacegroup_model):
    from ase_unimat.search.unimat_seeds import UniMatSeedSource

    source = UniMatSeedSource(model=spacegroup_model, template_reference=index, device="cpu", steps=2)
    seeds = source.make({"Cs": 1, "Br": 1}, list(range(6)), run_seed=0)
    assert {s.atoms.info["unimat_spacegroup_source"] for s in seeds} == {"auto:templates"}
    assert {s.atoms.info["unimat_spacegroup"] for s in seeds} <= {221, 225}
    given = UniMatSeedSource(model=spacegroup_model, template_reference=index, device="cpu", steps=2, spacegroup="12")
    seed = given.make({"Cs": 1, "Br": 1}, [0], run_seed=0)[0]
    assert seed.atoms.info["unimat_spacegroup"] == 12 and seed.atoms.info["unimat_spacegroup_source"] == "given"


@pytest.mark.parametrize("value", ["sometimes", "0", 231])
def test_a_bad_spacegroup_option_is_an_error(value):
    from ase_unimat.search.unimat_seeds import UniMatSeedSource

    with pytest.raises(SeedSourceError, match="space group"):
        UniMatSeedSource(spacegroup=value)


def test_a_denoised_template_is_conditioned_on_its_own_space_group(index, spacegroup_model):
    from ase_unimat.search.unimat_seeds import UniMatSeedSource

    source = UniMatSeedSource(model=spacegroup_model, template_reference=index, device="cpu", steps=4,
                              start="template", strength=0.5)  # fmt: skip
    seeds = source.make({"Cs": 1, "Br": 1}, [0, 1], run_seed=0)
    own = {"cscl": 221, "rocksalt": 225}
    for seed in seeds:
        template = seed.atoms.info["unimat_start"].split()[1]
        assert seed.atoms.info["unimat_spacegroup"] == own[template]
        assert seed.atoms.info["unimat_spacegroup_source"] == "start template"
    assert {s.atoms.info["unimat_start"].split()[1] for s in seeds} == {"cscl", "rocksalt"}


def test_the_prior_and_the_templates_of_one_source_share_one_load_of_the_reference(spacegroup_model, tmp_path,
                                                                                  monkeypatch):  # fmt: skip
    from ase_unimat.data.hdf5 import write_structures
    from ase_unimat.search.unimat_seeds import UniMatSeedSource

    path = tmp_path / "reference.h5"
    write_structures(path, [bulk("NaCl", "rocksalt", a=5.64), bulk("CsCl", "cesiumchloride", a=4.12)],
                     material_ids=["rocksalt", "cscl"])  # fmt: skip
    loads = []
    real = TemplateIndex.from_hdf5.__func__
    monkeypatch.setattr(TemplateIndex, "from_hdf5", classmethod(lambda cls, p, *a, **k: loads.append(p) or real(cls, p, *a, **k)))
    source = UniMatSeedSource(model=spacegroup_model, template_reference=str(path), device="cpu", steps=2,
                              start="template", strength=0.5)  # fmt: skip
    source.make({"Cs": 1, "Br": 1}, [0, 1], run_seed=0)  # the templates
    _, prior = source._condition()  # the space-group prior of its noise samples
    assert prior.distribution({"Cs": 1, "Br": 1})[2] == "templates"
    assert len(loads) == 1


def test_symmetry_start_samples_inside_each_templates_symmetry(spacegroup_model):
    import spglib

    from ase_unimat.search.unimat_seeds import UniMatSeedSource

    index = TemplateIndex.from_atoms([bulk("ZnO", "wurtzite", a=3.25, c=5.2)], ["wurtzite"])
    source = UniMatSeedSource(model=spacegroup_model, template_reference=index, device="cpu", steps=4, start="symmetry",
                              min_distance=None)  # the constraint itself: no redraw or fallback (tested apart)
    seeds = source.make({"Ga": 2, "N": 2}, [0, 1, 2], run_seed=0)  # the wurtzite template, three times
    positions = []
    for seed in seeds:
        atoms = seed.atoms
        assert atoms.info["unimat_symmetry_kept"] is True and atoms.info["unimat_symmetrized"] is True
        assert atoms.info["unimat_strength"] == 1.0 and atoms.info["unimat_start"].split()[1] == "wurtzite"
        found = spglib.get_symmetry_dataset((atoms.cell[:], atoms.get_scaled_positions(), atoms.numbers), symprec=1e-3)
        assert found.number in (186, 194)  # the template's P6_3mc (or its supergroup)
        positions.append(atoms.get_scaled_positions())
    assert not np.allclose(positions[0], positions[1], atol=1e-3)  # the noise, not a perturbation, differs
    with pytest.raises(SeedSourceError, match="unknown UniMat start"):
        UniMatSeedSource(start="symmetric")
