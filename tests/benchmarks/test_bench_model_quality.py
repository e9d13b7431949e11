"""The model-quality benchmark on a tiny untrained model, Cu-Au crystals and EMT (no CHGNet, no trained model)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk
from pymatgen.core import Lattice, Structure
from pymatgen.io.ase import AseAtomsAdaptor

from ase_unimat.core.geometry import atom_counts

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "models" / "configs" / "test.toml"


@pytest.fixture
def mq(bench_module):
    """``bench.bench_model_quality``: the run."""
    return bench_module("bench.bench_model_quality")


@pytest.fixture
def mq_settings(bench_module):
    return bench_module("bench._model_quality_settings")


@pytest.fixture
def mq_data(bench_module):
    return bench_module("bench._model_quality_data")


@pytest.fixture
def mq_sampling(bench_module):
    return bench_module("bench._model_quality_sampling")


@pytest.fixture
def mq_scores(bench_module):
    return bench_module("bench._model_quality_scores")


@pytest.fixture
def mq_stability(bench_module):
    return bench_module("bench._model_quality_stability")


@pytest.fixture(scope="module")
def tiny_net():
    torch = pytest.importorskip("torch")
    from ase_unimat.model.config import load_config
    from ase_unimat.model.diffusion import build_model

    torch.manual_seed(0)
    return build_model(load_config(CONFIG)).eval()


def cuau_l10():
    return AseAtomsAdaptor.get_atoms(Structure(Lattice.tetragonal(2.80, 3.70), ["Cu", "Au"], [[0, 0, 0], [0.5] * 3]))


def cuau_b2():
    return AseAtomsAdaptor.get_atoms(Structure(Lattice.cubic(3.1), ["Cu", "Au"], [[0, 0, 0], [0.5] * 3]))


def references() -> list:
    """Four small Cu-Au crystals with material ids (EMT knows both elements)."""
    structures = [cuau_l10(), cu3au(), bulk("Cu", "fcc", a=3.6), bulk("Au", "fcc", a=4.08)]
    for i, atoms in enumerate(structures):
        atoms.info["material_id"] = f"test-{i}"
    return structures


def cu3au():
    lattice = Lattice.cubic(3.75)
    return AseAtomsAdaptor.get_atoms(
        Structure(lattice, ["Au", "Cu", "Cu", "Cu"], [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    )


def hull_records():
    from ase_unimat.evaluation.reference import ReferenceRecord

    def record(material_id, atoms, e_above_hull):
        counts = {}
        for symbol in atoms.get_chemical_symbols():
            counts[symbol] = counts.get(symbol, 0) + 1
        cif = AseAtomsAdaptor.get_structure(atoms).to(fmt="cif")
        return ReferenceRecord(material_id, "test", counts, e_above_hull, cif)

    return [record("cu", bulk("Cu", "fcc", a=3.6), 0.0), record("au", bulk("Au", "fcc", a=4.08), 0.0),
            record("l10", cuau_l10(), 0.0), record("b2", cuau_b2(), 0.05)]  # fmt: skip


# ------------------------------------------------------------------------------------------ seeds


def test_subsets_and_seeds_are_reproducible(mq_settings, mq_data):
    a = mq_data.seeded_subset(range(100), 10, seed=0, salt=1)
    assert a == mq_data.seeded_subset(range(100), 10, seed=0, salt=1) and a == sorted(a) and len(set(a)) == 10
    assert a != mq_data.seeded_subset(range(100), 10, seed=0, salt=2)
    assert a != mq_data.seeded_subset(range(100), 10, seed=1, salt=1)
    assert mq_data.seeded_subset(range(5), None, seed=0, salt=1) == [0, 1, 2, 3, 4]
    assert mq_data.seeded_subset(range(5), 9, seed=0, salt=1) == [0, 1, 2, 3, 4]
    seeds = {mq_data.sample_seed(s, i, j) for s in range(2) for i in range(1200) for j in range(mq_settings.MAX_K)}
    assert len(seeds) == 2 * 1200 * mq_settings.MAX_K


def test_settings_are_checked(mq_settings):
    with pytest.raises(ValueError, match="k must be"):
        mq_settings.QualitySettings(k=0)
    with pytest.raises(ValueError, match="coverage_reference"):
        mq_settings.QualitySettings(coverage_reference="some")
    assert mq_settings.QUICK.n_csp == 40 and mq_settings.QUICK.n_stability == 8 and mq_settings.DEFAULT.n_csp is None


# ---------------------------------------------------------------------------------------- sampling


def test_batched_sampling_equals_generate(mq_settings, mq_sampling, tiny_net):
    from ase_unimat.generation import generate

    jobs = [({"Cu": 1, "Au": 1}, 11, {"material_id": "a"}), ({"Cu": 3, "Au": 1}, 12, {}), ({"Au": 1}, 13, {})]
    settings = mq_settings.QualitySettings(batch_size=2)
    samples, problems = mq_sampling.sample_compositions(tiny_net, jobs, settings=settings)
    assert problems == []
    for (counts, seed, _), atoms in zip(jobs, samples, strict=True):
        steps = tiny_net.config.diffusion.default_steps  # the benchmark samples with the model's steps
        alone = generate(counts, seeds=[seed], model=tiny_net, device="cpu", steps=steps)[0]
        assert atom_counts(atoms) == counts and atoms.info["seed"] == seed
        assert np.allclose(atoms.cell[:], alone.cell[:], atol=1e-4)
        assert np.allclose(atoms.get_scaled_positions(), alone.get_scaled_positions(), atol=1e-4)
    assert samples[0].info["material_id"] == "a"


def test_unsamplable_composition_is_reported_not_fatal(mq_settings, mq_sampling, tiny_net):
    samples, problems = mq_sampling.sample_compositions(tiny_net, [({"Cu": 30}, 1, {}), ({"Cu": 1}, 2, {})],
                                                        settings=mq_settings.QualitySettings())  # fmt: skip
    assert samples[0] is None and samples[1] is not None
    assert len(problems) == 1 and "more than L" in problems[0]


# ----------------------------------------------------------------------------------------- scoring


def test_perfect_predictor_scores_full_match_and_coverage(mq_scores, tmp_path):
    refs = references()
    samples = {i: [a.copy(), a.copy()] for i, a in enumerate(refs)}
    csp = mq_scores.csp_scores(samples, refs, [0, 2], k=2)
    assert csp["match_rate_at_1"] == 1.0 and csp["rmse_at_1"] == pytest.approx(0.0, abs=1e-6)
    assert csp["match_rate_at_2"] == 1.0 and csp["n"] == 4 and csp["n_topk"] == 2
    gen = mq_scores.generative_scores([a.copy() for a in refs], refs, cache_dir=tmp_path)
    assert gen["struct_valid"] == 1.0 and gen["comp_valid"] == 1.0  # Cu-Au only: metals are valid
    assert gen["cov_recall"] == 1.0 and gen["cov_precision"] == 1.0
    assert gen["wdist_density"] == pytest.approx(0.0, abs=1e-9) and "compositions are given" in gen["note"]
    assert len(list(tmp_path.glob("fingerprints-*.npz"))) == 1  # reference fingerprints cached


def test_wrong_prediction_does_not_match(mq_scores):
    refs = references()[:2]
    swapped = {0: [refs[1]], 1: [cuau_b2()]}  # Cu3Au for CuAu; B2 for Cu3Au: wrong composition / structure
    csp = mq_scores.csp_scores(swapped, refs, [], k=1)
    assert csp["match_rate_at_1"] == 0.0 and math.isnan(csp["rmse_at_1"])


def test_every_element_has_an_elemental_reference_now(mq_stability):
    records = hull_records()
    assert mq_stability.unreferenced_elements(["Cu", "Au"], records) == []
    # F: a boxed F2 molecule, S: a chain crystal, Ag: ASE's fcc bulk (elemental.elemental_fallback)
    assert mq_stability.unreferenced_elements(["Cu", "Au", "Ag", "F", "S"], records) == []


def test_stability_puts_known_phases_on_the_hull_and_replaces_failed_systems(mq_settings, mq_stability, tmp_path):
    cufe = AseAtomsAdaptor.get_atoms(Structure(Lattice.cubic(2.9), ["Cu", "Fe"], [[0, 0, 0], [0.5] * 3]))
    samples = [(0, cuau_l10()), (1, cufe), (2, bulk("Cu", "fcc", a=3.6)), (3, cu3au())]
    settings = mq_settings.QualitySettings(n_stability=3, calculator="emt", workers=1, max_steps=100)
    assert 1 in np.random.default_rng([settings.seed, 3]).permutation(4)[:3]  # Cu-Fe is among the first three
    st = mq_stability.stability_scores(samples, settings=settings, hull_records=hull_records(), training=[cuau_l10()],
                                       cache_dir=tmp_path, say=lambda message: None)  # fmt: skip
    # EMT has no Fe: the Cu-Fe candidate's hull cannot be built, the fourth candidate takes its place.
    assert st["hull_undefined"]["elemental_phase_failed_to_relax"] == {"Fe": 1}
    assert sorted(st["test_indices"]) == [0, 2, 3] and st["n"] == st["n_relaxed"] == 3
    e_hull = dict(zip(st["test_indices"], st["e_hull"], strict=True))
    assert e_hull[0] == pytest.approx(0.0, abs=2e-3) and e_hull[2] == pytest.approx(0.0, abs=2e-3)  # hull phases
    assert st["novelty"] == pytest.approx(2 / 3)  # L10 is in the training set
    assert st["uniqueness"] == 1.0 and st["hull"]["chemical_systems"] == 2


# ------------------------------------------------------------------------------------------ a run


def test_run_on_tiny_model_writes_consistent_results(mq, mq_settings, tiny_net, tmp_path):
    from bench import json_safe

    settings = mq_settings.QualitySettings(n_topk=2, k=2, n_stability=2, calculator="emt", workers=1, max_steps=30,
                                           batch_size=3)  # fmt: skip
    training = [bulk("Cu", "fcc", a=3.6), cuau_l10()]
    result = mq.run_model_quality(settings, out_dir=tmp_path / "out", model=tiny_net, references=references(),
                                  hull_records=hull_records(), training=training, cache_dir=tmp_path / "cache",
                                  stem="mq", say=lambda message: None)  # fmt: skip
    record = json.loads(json.dumps(json_safe(result)))
    assert record["model"] == {"name": "test", "path": None, "step": None}
    assert record["reference_set"] == {"source": "given", "n": 4}
    csp, gen, st = record["csp"], record["generation"], record["stability"]
    assert csp["n"] == 4 and csp["n_topk"] == 2 and csp["k"] == 2
    assert 0.0 <= csp["match_rate_at_1_topk_subset"] <= csp["match_rate_at_2"] <= 1.0
    for key in ("struct_valid", "comp_valid", "valid", "cov_recall", "cov_precision"):
        assert 0.0 <= gen[key] <= 1.0
    assert gen["n_generated"] == 4 and gen["n_reference"] == 4
    assert st["n"] == 2 and len(st["e_hull"]) == 2 and len(st["test_indices"]) == 2
    for key in ("frac_e_hull_le_0", "frac_e_hull_le_0.1", "uniqueness", "novelty", "sun_rate"):
        assert 0.0 <= st[key] <= 1.0
    assert st["frac_e_hull_le_0"] <= st["frac_e_hull_le_0.1"] and st["sun_rate"] <= st["frac_e_hull_le_0.1"]
    assert st["relax"]["calculator"] == "emt" and st["relax"]["max_steps"] == 30
    assert record["settings"]["torch_threads"] == 1 and record["settings"]["steps"] == 10
    assert len(record["samples"]["k1_seeds"]) == 4
    assert {"load", "sample_k1", "sample_topk_extra", "csp_match", "generation_metrics", "stability"} <= set(record["wall_s"])
    table = (tmp_path / "out" / "mq.md").read_text()
    assert "CSP match@1" in table and "S.U.N." in table
    assert (tmp_path / "cache" / "hull_energies.json").exists()


# --------------------------------------------------------------------------------------------- data


def test_load_test_set_reads_the_shared_csv(mq_data, shared_data, monkeypatch):
    monkeypatch.delenv(mq_data.TEST_H5_VARIABLE, raising=False)
    structures, source = mq_data.load_test_set(shared_data / mq_data.TEST_CSV)
    assert len(structures) == 1130 and source.endswith("test.csv.gz")
    assert all(a.info["material_id"].startswith("mp-") for a in structures[:20])


def test_load_test_set_prefers_the_h5_variable(mq_data, tmp_path, monkeypatch):
    from ase_unimat.data.hdf5 import write_structures

    path = tmp_path / "t.h5"
    write_structures(path, references(), material_ids=["a", "b", "c", "d"])
    monkeypatch.setenv(mq_data.TEST_H5_VARIABLE, str(path))
    structures, source = mq_data.load_test_set()
    assert source == str(path) and [a.info["material_id"] for a in structures] == ["a", "b", "c", "d"]


def test_runner_lists_the_benchmark(bench_module):
    bench = bench_module("bench")

    assert bench.discover()["model_quality"] == "bench.bench_model_quality"
    assert "mp_20/test" in bench.describe("bench.bench_model_quality")
