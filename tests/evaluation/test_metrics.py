"""Generative metrics: hand-worked cases, broken structures, and the mp_20 test split against itself."""

from __future__ import annotations

import gzip
import math
import warnings

import numpy as np
import pytest
from ase import Atoms
from pymatgen.core import Lattice, Structure

from ase_unimat.evaluation import metrics
from ase_unimat.evaluation.metrics import CompositionScaler, Fingerprints


def cscl(a: float = 4.0, shift: float = 0.0) -> Structure:
    """CsCl-type cell, the Cl atom moved ``shift`` A along x."""
    return Structure(Lattice.cubic(a), ["Cs", "Cl"], [[0, 0, 0], [0.5 + shift / a, 0.5, 0.5]])


def rocksalt_nacl(a: float = 5.64) -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


# ------------------------------------------------------------------------------------ validity


def test_structure_validity_catches_overlap_tiny_volume_and_self_images():
    assert metrics.structure_validity(rocksalt_nacl())
    overlapping = Structure(Lattice.cubic(5.0), ["Na", "Cl"], [[0, 0, 0], [0.06, 0, 0]])  # 0.3 A apart
    assert not metrics.structure_validity(overlapping)
    tiny = Structure(Lattice.cubic(0.4), ["Si"], [[0, 0, 0]])  # 0.064 A^3 and 0.4 A to its own image
    assert not metrics.structure_validity(tiny)
    # Volume fine (0.45 * 6 * 6 = 16.2 A^3) but the atom sees its own image 0.45 A away: caught.
    needle = Structure(Lattice.orthorhombic(0.45, 6, 6), ["Si"], [[0, 0, 0]])
    assert not metrics.structure_validity(needle)
    # Across the periodic boundary: 0.2 A apart through the cell face.
    across = Structure(Lattice.cubic(5.0), ["Na", "Cl"], [[0.01, 0, 0], [0.97, 0, 0]])
    assert metrics.min_interatomic_distance(across) == pytest.approx(0.2)
    assert not metrics.structure_validity(across)


def test_structure_validity_accepts_ase_atoms():
    atoms = Atoms("NaCl", positions=[[0, 0, 0], [2.82, 0, 0]], cell=[5.64, 5.64, 5.64], pbc=True)
    assert metrics.structure_validity(atoms)
    atoms.positions[1] = [0.2, 0, 0]
    assert not metrics.structure_validity(atoms)


@pytest.mark.parametrize(
    ("formula", "kwargs", "expected"),
    [
        ("NaCl", {}, True),  # Na+ Cl-
        ("MgO", {}, True),
        ("Si", {}, True),  # one element
        ("Fe3Al", {}, True),  # only metals: an alloy
        # Na in {-1, +1}, Cl in {-1, 1..7}: Na + 2 Cl = 0 has no solution
        ("NaCl2", {}, False),
        # Na in {-1, +1}, Mg in {+1, +2}: only Na- Mg+ is neutral, and Na (0.93) is less
        # electronegative than Mg (1.31), so the Pauling test rejects it
        ("NaMg", {"include_alloys": False}, False),
        ("NaMg", {"include_alloys": False, "use_pauling_test": False}, True),
        # Mg + 3 Na = 0 has no solution with Mg in {1, 2}, Na in {-1, 1}
        ("MgNa3", {"include_alloys": False, "use_pauling_test": False}, False),
    ],
)
def test_composition_validity_hand_worked(formula, kwargs, expected):
    assert metrics.composition_validity(formula, **kwargs) is expected


def test_composition_validity_reduces_counts_and_reads_structures():
    assert metrics.composition_validity({"Na": 4, "Cl": 4})
    assert metrics.composition_validity(rocksalt_nacl())
    assert not metrics.composition_validity(Atoms("NaCl2", cell=[5, 5, 5], pbc=True))
    with pytest.raises(ValueError, match="integer"):
        metrics.composition_validity({"Na": 0.5, "Cl": 1})


# ------------------------------------------------------------------------------------ coverage


def test_coverage_hand_worked():
    # 1-D "fingerprints": reference at 0 and 2; generated at 0.1, 0.5 and one failed fingerprint.
    ref = Fingerprints(structure=np.array([[0.0], [2.0]]), composition=np.zeros((2, 1)))
    gen = Fingerprints(structure=np.array([[0.1], [0.5], [np.nan]]), composition=np.array([[0.0], [0.0], [np.nan]]))
    identity = CompositionScaler(means=np.zeros(1), stds=np.ones(1))
    out = metrics.coverage(gen, ref, struct_cutoff=0.4, comp_cutoff=10.0, comp_scaler=identity)
    assert out["cov_recall"] == pytest.approx(1 / 2)  # reference 0 is covered (0.1 away), 2 is not
    assert out["cov_precision"] == pytest.approx(1 / 3)  # 0.1 is close; 0.5 is not; failed counts in 3
    assert out["amsd_recall"] == pytest.approx((0.1 + 1.5) / 2)
    assert out["amsd_precision"] == pytest.approx((0.1 + 0.5) / 2)
    # The composition cutoff applies too: move generated compositions 11 away.
    far = Fingerprints(structure=gen.structure, composition=gen.composition + 11.0)
    out = metrics.coverage(far, ref, struct_cutoff=0.4, comp_cutoff=10.0, comp_scaler=identity)
    assert out["cov_recall"] == 0.0 and out["cov_precision"] == 0.0
    assert out["amcd_recall"] == pytest.approx(11.0)


def test_composition_scaler_standardises_and_zeroes_nan():
    fps = np.array([[1.0, 5.0, np.nan], [3.0, 5.0, np.nan]])
    scaler = CompositionScaler.fit(fps)
    np.testing.assert_allclose(scaler.means, [2.0, 5.0, 0.0])
    np.testing.assert_allclose(scaler.stds, [1.0, 1.0, 1.0])  # zero and undefined std -> 1
    np.testing.assert_allclose(scaler.transform(fps), [[-1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])


# ---------------------------------------------------------------------------- distribution distances


def test_wasserstein_distances_hand_worked():
    si_small = Structure(Lattice.cubic(20.0 ** (1 / 3)), ["Si"], [[0, 0, 0]])  # 20 A^3
    si_large = Structure(Lattice.cubic(40.0 ** (1 / 3)), ["Si"], [[0, 0, 0]])  # 40 A^3
    density = 28.0855 * 1.66053907 / 20.0  # g/cm^3 of one Si atom in 20 A^3
    # {d, d/2} against {d}: half the mass moves by d/2.
    assert metrics.density_wasserstein([si_small, si_large], [si_small]) == pytest.approx(density / 4, rel=1e-4)
    # {1, 2} elements against {2, 2}: half the mass moves by 1.
    assert metrics.num_elements_wasserstein([si_small, rocksalt_nacl()], [cscl(), cscl()]) == pytest.approx(0.5)


# ---------------------------------------------------------------------------------------- CSP


def test_csp_match_rms_hand_worked():
    # Two atoms, one moved 0.1 A: after removing the mean shift each moves 0.05 A; pymatgen
    # normalises by (V / n) ** (1/3) = (64 / 2) ** (1/3).
    out = metrics.csp_match([[cscl(shift=0.1)]], [cscl()])
    assert out["match_rate_at_1"] == 1.0
    assert out["rmse_at_1"] == pytest.approx(0.05 / 32 ** (1 / 3), rel=1e-6)


def test_csp_match_at_k_takes_the_best_of_k():
    wrong = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.0), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    preds = [[wrong, cscl(shift=0.1), cscl()], [wrong]]
    out = metrics.csp_match(preds, [cscl(), cscl()])
    assert out["k"] == 3
    assert out["match_rate_at_1"] == 0.0 and math.isnan(out["rmse_at_1"])
    assert out["match_rate_at_k"] == 0.5
    assert out["rmse_at_k"] == pytest.approx(0.0, abs=1e-6)  # the exact copy beats the shifted one
    assert metrics.csp_match(preds, [cscl(), cscl()], k=2)["rmse_at_k"] == pytest.approx(0.05 / 32 ** (1 / 3))


def test_csp_match_rejects_invalid_predictions_and_bad_input():
    collapsed = Structure(Lattice.cubic(4.0), ["Cs", "Cl"], [[0, 0, 0], [0.05, 0, 0]])
    assert metrics.csp_match([[collapsed]], [cscl()])["match_rate_at_1"] == 0.0
    with pytest.raises(ValueError, match="prediction lists"):
        metrics.csp_match([[cscl()]], [cscl(), cscl()])


# ------------------------------------------------------------------------------- the whole bundle


def test_generation_metrics_catches_broken_structures():
    good = rocksalt_nacl()
    overlapping = Structure(Lattice.cubic(5.0), ["Na", "Cl"], [[0, 0, 0], [0.04, 0, 0]])
    non_neutral = Structure(Lattice.cubic(5.0), ["Na", "Cl", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0, 0]])
    out = metrics.generation_metrics([good, overlapping, non_neutral], [good], dataset="mp_20")
    assert out["struct_valid"] == pytest.approx(2 / 3)
    assert out["comp_valid"] == pytest.approx(2 / 3)
    assert out["valid"] == pytest.approx(1 / 3)
    assert out["wdist_density"] == pytest.approx(0.0, abs=1e-9)  # the one valid structure is the reference
    assert out["cov_recall"] == 1.0
    with pytest.raises(ValueError, match="unknown dataset"):
        metrics.generation_metrics([good], [good], dataset="mp_21")


def _mp20_test_sample(shared_data, n: int) -> list[Structure]:
    import pandas as pd

    with gzip.open(shared_data / "mp_20" / "test.csv.gz", "rt") as handle:
        frame = pd.read_csv(handle)
    rows = frame.sample(n=n, random_state=7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [Structure.from_str(cif, fmt="cif") for cif in rows["cif"]]


def test_mp20_test_sample_against_itself_is_perfect(shared_data):
    structures = _mp20_test_sample(shared_data, 8)
    csp = metrics.csp_match([[s] for s in structures], structures)
    assert csp["match_rate_at_1"] == 1.0
    assert csp["rmse_at_1"] < 1e-4
    out = metrics.generation_metrics(structures, structures, dataset="mp_20")
    assert out["struct_valid"] == 1.0
    assert out["cov_recall"] == 1.0 and out["cov_precision"] == 1.0
    assert out["amsd_recall"] == pytest.approx(0.0, abs=1e-9)
    assert out["wdist_num_elems"] >= 0.0
    # Perturbing every structure a lot breaks the CSP match: the instrument can fail.
    rng = np.random.default_rng(0)
    shaken = [s.copy() for s in structures]
    for s in shaken:
        s.perturb(1.5, min_distance=1.0, seed=int(rng.integers(1 << 30)))
    assert metrics.csp_match([[s] for s in shaken], structures)["match_rate_at_1"] < 1.0


def test_pair_predictions_by_id_and_by_order():
    refs = [Atoms("Si", cell=[3, 3, 3], pbc=True, info={"material_id": m}) for m in ("a", "b")]
    preds = [Atoms("Si", cell=[3, 3, 3], pbc=True, info={"material_id": m, "k": i}) for i, m in enumerate("bab")]
    pairs = metrics.pair_predictions(preds, refs)
    assert [[p.info["k"] for p in group] for group in pairs] == [[1], [0, 2]]
    anonymous = [Atoms("Si", cell=[3, 3, 3], pbc=True, info={"k": i}) for i in range(4)]
    pairs = metrics.pair_predictions(anonymous, refs, k=2)
    assert [[p.info["k"] for p in group] for group in pairs] == [[0, 1], [2, 3]]
    with pytest.raises(ValueError, match="k per reference"):
        metrics.pair_predictions(anonymous[:3], refs, k=2)
    stray = [Atoms("Si", cell=[3, 3, 3], pbc=True, info={"material_id": "z"})]
    with pytest.raises(ValueError, match="not among the references"):
        metrics.pair_predictions(stray, refs)
