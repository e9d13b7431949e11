"""Random seeds' target volume: the fitted per-element table, its fallback, and the fit itself."""

import json

import numpy as np
import pytest
from ase import Atoms

from ase_unimat.data.hdf5 import write_structures
from ase_unimat.search.volume import PACKING, element_volume, element_volumes, estimate_volume, sphere_volume
from ase_unimat.search.volume_fit import fit_element_volumes, write_table


def test_shipped_table_covers_the_common_elements_with_plausible_values():
    table = element_volumes()
    assert len(table) > 80
    assert all(3.0 < v < 80.0 for v in table.values())
    # Open covalent silicon needs more room than covalent spheres give it (diamond: 20.0 A^3/atom).
    assert table["Si"] > 1.5 * PACKING * sphere_volume({"Si": 1})


def test_estimate_is_the_sum_of_element_volumes():
    counts = {"Mg": 2, "Si": 1, "O": 4}
    expected = 2 * element_volume("Mg") + element_volume("Si") + 4 * element_volume("O")
    assert estimate_volume(counts) == pytest.approx(expected)


def test_an_element_outside_the_table_falls_back_to_covalent_spheres():
    missing = "Rn"
    assert missing not in element_volumes()
    assert element_volume(missing) == pytest.approx(PACKING * sphere_volume({missing: 1}))


def test_explicit_packing_keeps_the_covalent_rule():
    counts = {"Si": 2}
    assert estimate_volume(counts, packing=2.0) == pytest.approx(2.0 * sphere_volume(counts))


def _cubic(symbols: str, volume_per_atom: float, rng: np.random.Generator) -> Atoms:
    n = len(Atoms(symbols))
    side = (volume_per_atom * n) ** (1.0 / 3.0)
    return Atoms(symbols, scaled_positions=rng.random((n, 3)), cell=[side] * 3, pbc=True)


def test_fit_recovers_known_element_volumes(tmp_path):
    """Structures built with v(Cu) = 12, v(O) = 9 (mixtures weighted by atom fraction) and outliers."""
    rng = np.random.default_rng(0)
    truth = {"Cu": 12.0, "O": 9.0}
    structures = []
    for symbols in ["Cu", "Cu2", "O2", "CuO", "Cu2O", "CuO2", "Cu3O", "CuO3"] * 3:
        atoms = Atoms(symbols)
        per_atom = np.mean([truth[s] for s in atoms.get_chemical_symbols()])
        structures.append(_cubic(symbols, per_atom * rng.uniform(0.97, 1.03), rng))
    structures.append(_cubic("CuO", 60.0, rng))  # a porous outlier the robust loss must not follow
    path = tmp_path / "toy.h5"
    write_structures(path, structures)

    fitted = fit_element_volumes(path)
    assert set(fitted) == {"Cu", "O"}
    assert fitted["Cu"] == pytest.approx(12.0, rel=0.03)
    assert fitted["O"] == pytest.approx(9.0, rel=0.03)

    out = write_table(fitted, tmp_path / "table.json", source="toy")
    doc = json.loads(out.read_text())
    assert doc["source"] == "toy" and list(doc["volumes"]) == ["O", "Cu"]  # atomic-number order
