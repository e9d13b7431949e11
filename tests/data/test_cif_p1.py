"""The fast P1 CIF reader gives pymatgen's crystal, and declines everything it does not handle."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from ase_unimat.data.cif_p1 import NotSimpleCif, parse_p1_cif
from ase_unimat.data.readers import iter_raw, parse_cif

CIF = """# generated using pymatgen
data_NaCl
_symmetry_space_group_name_H-M   'P 1'
_cell_length_a   4.00000000
_cell_length_b   5.00000000
_cell_length_c   6.00000000
_cell_angle_alpha   80.00000000
_cell_angle_beta   95.00000000
_cell_angle_gamma   110.00000000
_symmetry_Int_Tables_number   1
_chemical_formula_structural   NaCl
_chemical_formula_sum   'Na2 Cl1'
_cell_volume   100.0
_cell_formula_units_Z   1
loop_
 _symmetry_equiv_pos_site_id
 _symmetry_equiv_pos_as_xyz
  1  'x, y, z'
loop_
 _atom_site_type_symbol
 _atom_site_label
 _atom_site_symmetry_multiplicity
 _atom_site_fract_x
 _atom_site_fract_y
 _atom_site_fract_z
 _atom_site_occupancy
  Na  Na0  1  0.00000000  -0.00000000  0.50000000  1
  Na  Na1  1  0.33333300  0.66666700  0.25000000  1
  Cl  Cl2  1  1.00000000  0.50000000  0.75000000  1
"""



def test_matches_pymatgen_on_a_handwritten_cif():
    fast, reference = parse_p1_cif(CIF), parse_cif(CIF, fast=False)
    assert fast.get_chemical_formula() == "ClNa2"
    np.testing.assert_allclose(fast.cell.cellpar(), reference.lattice.parameters, rtol=1e-12)
    # pymatgen rounds 0.333333 and 0.666667 to 1/3 and 2/3; so does the fast reader
    np.testing.assert_allclose(fast.get_scaled_positions()[1], [1 / 3, 2 / 3, 0.25], atol=1e-12)
    np.testing.assert_allclose(np.sort(fast.get_scaled_positions(), axis=0),
                               np.sort(np.mod(reference.frac_coords, 1.0), axis=0), atol=1e-12)


def test_matches_pymatgen_on_the_shared_data(shared_data):
    files = sorted(shared_data.glob("**/*.csv.gz")) + sorted(shared_data.glob("**/*.tar.gz"))
    for path in files:
        for raw in itertools.islice(iter_raw(path), 0, 200, 20):
            fast, reference = parse_p1_cif(raw.payload), parse_cif(raw.payload, fast=False)
            assert sorted(fast.numbers) == sorted(s.specie.Z for s in reference)
            np.testing.assert_allclose(fast.cell.cellpar(), reference.lattice.parameters, rtol=1e-10)
            frac_fast = np.mod(fast.get_scaled_positions(wrap=False), 1.0)
            frac_ref = np.mod(reference.frac_coords, 1.0)
            for z in set(fast.numbers):  # same sites per element (the CIF's order is kept by both)
                a, b = frac_fast[fast.numbers == z], frac_ref[[s.specie.Z == z for s in reference]]
                delta = np.abs(a - b)
                assert np.minimum(delta, 1 - delta).max() < 1e-10


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("  1  'x, y, z'", "  1  'x, y, z'\n  2  '-x, -y, -z'"), "symmetry operations other than the identity"),
        (("0.25000000  1\n", "0.25000000  0.5\n"), "partial occupancy"),
        (("  Cl  Cl2", "  Cl-  Cl2"), "not a plain element symbol"),
        (("  Cl  Cl2", "  Xx  Cl2"), "not a plain element symbol"),
        (("_cell_length_a   4.00000000", "_cell_length_a   4.000(2)"), "uncertainty"),
        (("data_NaCl", "data_NaCl\ndata_other"), "2 data blocks"),
        (("  1  'x, y, z'\n", ""), "symmetry operations other than the identity"),
        (("1.00000000  0.50000000  0.75000000", "0.33333300  0.66666700  0.25000100"), "same position"),
        (("_cell_angle_alpha   80.00000000", "_cell_angle_alpha   170.0"), "no 3-D cell"),
        (("Na  Na0  1  0.00000000", "Na  Na0  1"), "different number of values"),
    ],
)
def test_declines_what_it_does_not_handle(change, message):
    with pytest.raises(NotSimpleCif, match=message):
        parse_p1_cif(CIF.replace(*change))


def test_declines_cif_without_atoms_or_symmetry():
    with pytest.raises(NotSimpleCif, match="no symmetry operation loop"):
        parse_p1_cif(CIF.split("loop_")[0] + "loop_" + CIF.split("loop_")[2])
    with pytest.raises(NotSimpleCif):
        parse_p1_cif("hello")


def test_parse_cif_falls_back_to_pymatgen_for_symmetry():
    cif = CIF.replace("  1  'x, y, z'", "  1  'x, y, z'\n  2  'x+1/2, y+1/2, z'")
    structure = parse_cif(cif)
    assert type(structure).__name__ == "Structure" and len(structure) == 6
