"""UniMat seed source on a tiny untrained model: composition, reproducibility, fallback error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ase_unimat.search.seeds import NoSeedsForFormula, derive_seed

CONFIG = Path(__file__).resolve().parents[2] / "models" / "configs" / "test.toml"
COUNTS = {"Mg": 2, "Si": 1, "O": 4}


@pytest.fixture(scope="module")
def source():
    torch = pytest.importorskip("torch")
    from ase_unimat.model.config import load_config
    from ase_unimat.model.diffusion import build_model
    from ase_unimat.search.unimat_seeds import UniMatSeedSource

    torch.manual_seed(0)
    return UniMatSeedSource(model=build_model(load_config(CONFIG)), device="cpu", steps=3)


def test_seeds_have_the_composition_and_provenance(source):
    seeds = source.make(COUNTS, [0, 1, 2], run_seed=3)
    for k, seed in enumerate(seeds):
        assert seed.id == f"Mg2SiO4-unimat-{k:06d}" and seed.source == "unimat"
        assert sorted(seed.atoms.get_chemical_symbols()) == sorted(["Mg", "Mg", "Si", "O", "O", "O", "O"])
        assert seed.atoms.info["seed"] == derive_seed(3, "unimat", k) and seed.atoms.info["unimat_steps"] == 3


def test_seed_k_does_not_depend_on_its_batch(source):
    together = source.make(COUNTS, [4, 5, 6], run_seed=1)
    alone = source.make(COUNTS, [6], run_seed=1)
    # Same per-sample seed; batched float32 arithmetic may differ in the last bits only.
    assert np.allclose(together[2].atoms.positions, alone[0].atoms.positions, atol=1e-4)
    assert np.allclose(together[2].atoms.cell[:], alone[0].atoms.cell[:], atol=1e-4)
    assert not np.allclose(together[0].atoms.positions, together[1].atoms.positions, atol=1e-3)


def test_too_many_atoms_of_one_element_is_a_fallback_error(source):
    with pytest.raises(NoSeedsForFormula, match="cannot build O30"):
        source.make({"O": 30}, [0], run_seed=0)


@pytest.fixture(scope="module")
def template_source():
    torch = pytest.importorskip("torch")
    from ase.build import bulk

    from ase_unimat.model.config import load_config
    from ase_unimat.model.diffusion import build_model
    from ase_unimat.search.seed_registry import make_seed_sources
    from ase_unimat.search.templates import TemplateIndex

    torch.manual_seed(0)
    index = TemplateIndex.from_atoms(
        [bulk("NaCl", "rocksalt", a=5.64), bulk("CsCl", "cesiumchloride", a=4.12)], ["nacl", "cscl"]
    )
    return make_seed_sources("unimat-template", model=build_model(load_config(CONFIG)), template_reference=index,
                             unimat_options={"device": "cpu", "steps": 10, "strength": 0.1})  # fmt: skip


def test_unimat_template_seeds_start_from_the_templates(template_source):
    from ase_unimat.search.seed_registry import make_seed_sources

    seeds = template_source.make({"K": 1, "Br": 1}, [0, 1, 2], run_seed=0)
    plain = make_seed_sources("template", template_reference=template_source.sources["unimat-template"].template_reference)
    templates = plain.make({"K": 1, "Br": 1}, [0, 1, 2], run_seed=0)
    for seed, template in zip(seeds, templates, strict=True):
        assert seed.source == "unimat-template" and seed.id.startswith("KBr-unimat-template-")
        info = seed.atoms.info
        assert info["unimat_start"].startswith(f"template {template.atoms.info['template_id']} rank ")
        assert info["unimat_strength"] == 0.1
        # strength 0.1: one denoising step from a barely noised template keeps its volume per atom roughly
        ratio = seed.atoms.get_volume() / template.atoms.get_volume()
        assert 0.5 < ratio < 2.0
    assert seeds[2].atoms.info["unimat_start"].endswith("cycle 1")


def test_unimat_template_without_a_template_samples_from_noise(template_source):
    seeds = template_source.make(COUNTS, [0, 1], run_seed=0)
    assert all(s.atoms.info["unimat_start"] == "noise (no template)" for s in seeds)
    assert "unimat_strength" not in seeds[0].atoms.info


def test_bad_start_options_are_errors():
    from ase_unimat.search.seeds import SeedSourceError
    from ase_unimat.search.unimat_seeds import UniMatSeedSource

    with pytest.raises(SeedSourceError, match="unknown UniMat start"):
        UniMatSeedSource(start="prototype")
    with pytest.raises(SeedSourceError, match="strength"):
        UniMatSeedSource(start="template", strength=1.5)


def test_strength_levels_follow_the_passes_over_the_templates(template_source):
    from dataclasses import replace

    ladder = replace(template_source.sources["unimat-template"], strength=(0.1, 0.5))
    seeds = ladder.make({"K": 1, "Br": 1}, [0, 1, 2, 3, 4], run_seed=0)  # 2 candidates: passes 0, 0, 1, 1, 2
    assert [s.atoms.info["unimat_strength"] for s in seeds] == [0.1, 0.1, 0.5, 0.5, 0.5]
    starts = [s.atoms.info["unimat_start"] for s in seeds]
    assert starts[0].replace("cycle 0", "cycle 1") == starts[2] and starts[0] != starts[1]
    alone = ladder.make({"K": 1, "Br": 1}, [3], run_seed=0)[0]
    assert np.allclose(alone.atoms.positions, seeds[3].atoms.positions, atol=1e-4)


def test_volume_first_pass_keeps_the_template_and_takes_the_denoised_volume(template_source):
    from dataclasses import replace

    denoise = template_source.sources["unimat-template"]
    volume = replace(denoise, first_pass="volume")
    counts = {"K": 1, "Br": 1}
    refined = denoise.make(counts, [0, 1, 2], run_seed=0)
    kept = volume.make(counts, [0, 1, 2], run_seed=0)
    templates = volume._templates.make(counts, [0, 1], run_seed=0)
    for k in (0, 1):  # first pass: the template's arrangement and cell shape, the denoised volume
        assert np.allclose(kept[k].atoms.get_scaled_positions(), templates[k].atoms.get_scaled_positions(), atol=1e-9)
        scale = (kept[k].atoms.get_volume() / templates[k].atoms.get_volume()) ** (1 / 3)
        assert np.allclose(kept[k].atoms.cell[:], templates[k].atoms.cell[:] * scale, atol=1e-9)
        assert kept[k].atoms.get_volume() == pytest.approx(refined[k].atoms.get_volume(), rel=1e-9)
        assert kept[k].atoms.info["unimat_start"] == refined[k].atoms.info["unimat_start"]
    assert np.allclose(kept[2].atoms.positions, refined[2].atoms.positions)  # later passes: denoised as before


def test_symmetrize_first_pass_gives_the_template_symmetry_to_the_denoised_structure(template_source):
    from dataclasses import replace

    import spglib

    denoise = template_source.sources["unimat-template"]
    symmetric = replace(denoise, first_pass="symmetrize")
    counts = {"K": 1, "Br": 1}
    refined = denoise.make({"K": 2, "Br": 2}, [0, 1, 2], run_seed=0)
    kept = symmetric.make({"K": 2, "Br": 2}, [0, 1, 2], run_seed=0)  # conventional-ish doubled cells
    for k in (0, 1):
        atoms = kept[k].atoms
        assert atoms.info["unimat_symmetrized"] is True
        group = spglib.get_symmetry_dataset((atoms.cell[:], atoms.get_scaled_positions(), atoms.numbers), symprec=1e-4)
        assert group.number > 1  # the tiny untrained model's sample alone is P1
        assert atoms.get_volume() == pytest.approx(refined[k].atoms.get_volume(), rel=1e-9)
    assert np.allclose(kept[2].atoms.positions, refined[2].atoms.positions)  # later passes: denoised as before
    assert "unimat_symmetrized" not in kept[2].atoms.info
    assert symmetric.make(counts, [0], run_seed=0)[0].atoms.info["unimat_symmetrized"] is True


def test_unknown_first_pass_is_an_error():
    from ase_unimat.search.seeds import SeedSourceError
    from ase_unimat.search.unimat_seeds import UniMatSeedSource

    with pytest.raises(SeedSourceError, match="first pass"):
        UniMatSeedSource(start="template", first_pass="relax")


def test_cells_below_template_min_atoms_sample_from_noise(template_source):
    from dataclasses import replace

    small = replace(template_source.sources["unimat-template"], template_min_atoms=3)
    seeds = small.make({"K": 1, "Br": 1}, [0, 1], run_seed=0)  # a KBr template exists, but 2 atoms < 3
    assert all(s.atoms.info["unimat_start"] == "noise (small cell)" for s in seeds)
    larger = small.make({"K": 2, "Br": 2}, [0], run_seed=0)  # 4 atoms: the doubled templates are used
    assert larger[0].atoms.info["unimat_start"].startswith("template ")


def test_table_volume_scales_noise_samples_to_the_per_element_estimate(source):
    import dataclasses

    from ase_unimat.search.seeds import SeedSourceError
    from ase_unimat.search.unimat_seeds import UniMatSeedSource
    from ase_unimat.search.volume import estimate_volume

    scaled_source = dataclasses.replace(source, volume="table")
    plain = source.make(COUNTS, [0, 1], run_seed=2)
    scaled = scaled_source.make(COUNTS, [0, 1], run_seed=2)
    for a, b in zip(plain, scaled, strict=True):
        assert b.atoms.get_volume() == pytest.approx(estimate_volume(COUNTS), rel=1e-6)
        assert np.allclose(a.atoms.get_scaled_positions(), b.atoms.get_scaled_positions(), atol=1e-6)  # same sample
        assert np.allclose(a.atoms.cell.cellpar()[3:], b.atoms.cell.cellpar()[3:], atol=1e-6)  # same shape
    with pytest.raises(SeedSourceError, match="unknown UniMat volume 'big'"):
        UniMatSeedSource(volume="big")


def test_unimat_sym_spec_samples_inside_the_templates_symmetry(template_source):
    import spglib

    from ase_unimat.search.seed_registry import make_seed_sources

    reference = template_source.sources["unimat-template"].template_reference
    model = template_source.sources["unimat-template"].network()
    sym = make_seed_sources("unimat-sym", model=model, template_reference=reference,
                            unimat_options={"device": "cpu", "steps": 4})  # fmt: skip
    assert sym.sources["unimat-sym"].start == "symmetry"
    seeds = sym.make({"K": 1, "Br": 1}, [0, 1], run_seed=0)
    for seed in seeds:
        assert seed.source == "unimat-sym" and seed.id.startswith("KBr-unimat-sym-")
        atoms = seed.atoms
        found = spglib.get_symmetry_dataset((atoms.cell[:], atoms.get_scaled_positions(), atoms.numbers), symprec=1e-3)
        assert found.number in (221, 225)  # CsCl-type or rocksalt: the template's own group
    unchanged = make_seed_sources("unimat-sym", model=model, template_reference=reference,
                                  unimat_options={"device": "cpu", "steps": 4, "start": "noise"})  # fmt: skip
    assert unchanged.sources["unimat-sym"].start == "symmetry"  # the name decides the start


def test_unimat_sym_seeds_too_close_fall_back_to_free_sampling(template_source):
    from ase_unimat.search.seed_registry import make_seed_sources

    reference = template_source.sources["unimat-template"].template_reference
    model = template_source.sources["unimat-template"].network()

    def seeds(min_distance):
        sym = make_seed_sources("unimat-sym", model=model, template_reference=reference,
                                unimat_options={"device": "cpu", "steps": 4, "min_distance": min_distance})  # fmt: skip
        return sym.make({"K": 1, "Br": 1}, [0, 1], run_seed=0)

    for seed in seeds(0.5):  # rocksalt / CsCl KBr: atoms ~3 A apart, nothing to fall back from
        assert "unimat_fallback" not in seed.atoms.info and seed.atoms.info["unimat_symmetry_kept"]
    for seed in seeds(20.0):  # no KBr cell keeps atoms 20 A apart: the fallback runs, and says it failed too
        info = seed.atoms.info
        assert "symmetry" in info["unimat_fallback"] and info["unimat_too_close"]
        assert "unimat_symmetry_kept" not in info  # drawn without the constraint


def test_template_first_pass_keeps_the_templates_and_the_model_makes_the_later_passes(template_source):
    from dataclasses import replace

    from ase_unimat.search.seed_registry import make_seed_sources

    reference = template_source.sources["unimat-template"].template_reference
    plain = make_seed_sources("template", template_reference=reference).make({"K": 1, "Br": 1}, [0, 1], run_seed=0)
    for start in ("template", "symmetry"):
        source = replace(template_source.sources["unimat-template"], start=start, first_pass="template")
        seeds = source.make({"K": 1, "Br": 1}, [0, 1, 2, 3], run_seed=0)  # 2 candidates: pass 0 = seeds 0, 1
        for seed, template in zip(seeds[:2], plain, strict=True):
            assert seed.atoms.info["unimat_strength"] == 0.0 and "unimat_model" not in seed.atoms.info
            np.testing.assert_allclose(seed.atoms.positions, template.atoms.positions)
            np.testing.assert_allclose(seed.atoms.cell[:], template.atoms.cell[:])
        for seed in seeds[2:]:
            assert seed.atoms.info["unimat_strength"] > 0.0 and "unimat_model" in seed.atoms.info


def test_table_volume_also_scales_samples_inside_a_templates_symmetry(template_source):
    from dataclasses import replace

    from ase_unimat.search.volume import estimate_volume

    base = replace(template_source.sources["unimat-template"], start="symmetry")
    for seed in replace(base, volume="table").make({"K": 1, "Br": 1}, [0, 1], run_seed=0):
        assert seed.atoms.get_volume() == pytest.approx(estimate_volume({"K": 1, "Br": 1}), rel=1e-6)
    kept = replace(base, volume="table", first_pass="template").make({"K": 1, "Br": 1}, [0], run_seed=0)[0]
    assert kept.atoms.get_volume() != pytest.approx(estimate_volume({"K": 1, "Br": 1}), rel=1e-3)  # the template's own


def test_seeds_with_atoms_too_close_are_drawn_again(source):
    from ase_unimat.core.geometry import shortest_distance
    from ase_unimat.search.unimat_seeds import UniMatSeedSource

    strict = UniMatSeedSource(model=source.network(), device="cpu", steps=3, min_distance=1.2)
    raw = UniMatSeedSource(model=source.network(), device="cpu", steps=3, min_distance="none")
    checked, as_drawn = strict.make(COUNTS, range(8), run_seed=2), raw.make(COUNTS, range(8), run_seed=2)
    redrawn = [k for k, s in enumerate(checked) if "unimat_redraws" in s.atoms.info]
    assert redrawn, "an untrained model puts some atoms closer than 1.2 A"
    for k, (a, b) in enumerate(zip(checked, as_drawn, strict=True)):
        if k in redrawn:
            assert shortest_distance(a.atoms) >= 1.2 or a.atoms.info.get("unimat_too_close")
        else:
            np.testing.assert_allclose(a.atoms.positions, b.atoms.positions)
        # the flag says what the finished seed is: set exactly when its atoms are still too close
        assert bool(a.atoms.info.get("unimat_too_close")) == (shortest_distance(a.atoms) < 1.2)


def test_too_close_flag_is_the_finished_seeds(source, monkeypatch):
    """A flag ``generate`` set on a sample that this source's last touch moved apart again is dropped."""
    import ase_unimat.search.unimat_seeds as unimat_seeds
    from ase_unimat.search.unimat_seeds import UniMatSeedSource

    real = unimat_seeds.generate

    def flagged(*args, **kwargs):
        out = real(*args, **kwargs)
        for atoms in out:
            atoms.info["too_close"] = True  # as if the sample had been too close when drawn
        return out

    monkeypatch.setattr(unimat_seeds, "generate", flagged)
    seeds = UniMatSeedSource(model=source.network(), device="cpu", steps=3, min_distance=0.01).make(
        COUNTS, range(4), run_seed=2)  # fmt: skip
    assert all("unimat_too_close" not in s.atoms.info for s in seeds)  # no atoms are 0.01 A apart


@pytest.mark.parametrize("bad", ["-1", "far", 0.0, float("nan")])
def test_bad_min_distance_is_an_error(bad):
    from ase_unimat.search.seeds import SeedSourceError
    from ase_unimat.search.unimat_seeds import UniMatSeedSource

    with pytest.raises(SeedSourceError, match="min_distance"):
        UniMatSeedSource(min_distance=bad)
