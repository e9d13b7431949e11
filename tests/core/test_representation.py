"""The UniMat codec: round trips over the real data and random cells, and every rejected input."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from ase import Atoms
from ase.geometry import cell_to_cellpar
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linear_sum_assignment

from ase_unimat.core.periodic_table import MAX_Z, cell_of
from ase_unimat.core.representation import (
    NULL,
    RepresentationError,
    atom_slots,
    canonical_order,
    composition_of,
    decode,
    decode_batch,
    encode,
    encode_batch,
    lattice_to_cell,
    occupied,
    permute_slots,
    to_structure,
)
from ase_unimat.data.readers import iter_raw, parse_cif


def reference_frac(atoms: Atoms) -> np.ndarray:
    """Fractions the codec must reproduce: negated for a left-handed cell (encode flips it), wrapped."""
    frac = np.linalg.solve(atoms.cell[:].T, atoms.positions.T).T
    if np.linalg.det(atoms.cell[:]) < 0:
        frac = -frac
    return np.mod(frac, 1.0)


def assert_same_crystal(original, decoded: Atoms, *, tol: float = 1e-5) -> None:
    """Same species, cell parameters to ``tol`` relative, each site within ``tol`` fractional (mod 1)."""
    if not isinstance(original, Atoms):
        original = Atoms(numbers=[s.specie.Z for s in original], cell=original.lattice.matrix,
                         scaled_positions=original.frac_coords, pbc=True)
    assert sorted(original.numbers) == sorted(decoded.numbers)
    np.testing.assert_allclose(cell_to_cellpar(decoded.cell[:]), cell_to_cellpar(original.cell[:]), rtol=tol)
    frac_a, frac_b = reference_frac(original), decoded.get_scaled_positions(wrap=False)
    for z in np.unique(original.numbers):
        a, b = frac_a[original.numbers == z], frac_b[decoded.numbers == z]
        delta = np.abs(a[:, None, :] - b[None, :, :])
        delta = np.minimum(delta, 1.0 - delta).max(axis=-1)  # (n, n) periodic max-norm distance
        rows, cols = linear_sum_assignment(delta)
        assert delta[rows, cols].max() < tol, f"Z={z}: a site moved by {delta[rows, cols].max():.2e}"


def data_files(shared_data) -> list:
    return sorted(shared_data.glob("**/*.csv.gz")) + sorted(shared_data.glob("**/*.tar.gz"))


def slots_needed(atoms: Atoms) -> int:
    return max(np.bincount(atoms.numbers))


def real_elements(structure) -> bool:
    """Whether every site is a real element (AFLOW prototype CIFs may name a dummy species "M",
    which pymatgen reads as a DummySpecies; the converter skips those as unknown_element)."""
    if isinstance(structure, Atoms):
        return True
    return all(type(s.specie).__name__ != "DummySpecies" and 1 <= s.specie.Z <= 118 for s in structure)


def round_trip(structure) -> None:
    if not real_elements(structure):
        return
    atoms = structure if isinstance(structure, Atoms) else Atoms(numbers=[s.specie.Z for s in structure])
    n_slots = max(20, slots_needed(atoms))
    coords, lattice = encode(structure, n_slots=n_slots)
    assert coords.dtype == np.float32 and coords.shape == (n_slots, 9, 18, 3)
    assert_same_crystal(structure, decode(coords, lattice))


def test_round_trip_sample_of_every_shared_file(shared_data):
    files = data_files(shared_data)
    assert len(files) >= 10
    for path in files:
        for raw in itertools.islice(iter_raw(path), 0, 300, 30):  # 10 records spread over the first 300
            round_trip(parse_cif(raw.payload, fast=False))  # pymatgen's Structure is the reference


@pytest.mark.slow
def test_round_trip_all_shared_data(shared_data):
    n = 0
    # every record of the benchmark sets; mp_all's 77k structures are sampled by the test above
    # (and every one of them passes through encode in the conversion that trains the model)
    for path in [p for p in data_files(shared_data) if "mp_all" not in p.parts]:
        for raw in iter_raw(path):
            round_trip(parse_cif(raw.payload))  # the fast reader gives pymatgen's crystal (test_cif_p1)
            n += 1
    assert n > 20_000


# ------------------------------------------------------------------------------------------ random cells


@st.composite
def random_crystals(draw):
    """A triclinic cell (any handedness) with atoms of random elements Z = 1-118, up to L per element."""
    n_slots = draw(st.integers(1, 6))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    while True:
        cell = rng.normal(size=(3, 3)) * draw(st.floats(1.0, 12.0)) + np.eye(3) * 4.0
        if abs(np.linalg.det(cell)) > 2.0 and cell_to_cellpar(cell)[3:].min() > 10:
            break
    elements = draw(st.lists(st.integers(1, MAX_Z), min_size=1, max_size=5, unique=True))
    counts = [draw(st.integers(1, n_slots)) for _ in elements]
    numbers = np.repeat(elements, counts)
    frac = rng.random((len(numbers), 3)) * 3 - 1  # unwrapped on purpose
    return Atoms(numbers=numbers, cell=cell, scaled_positions=frac, pbc=True), n_slots


@settings(max_examples=1000, deadline=None, derandomize=True)
@given(random_crystals())
def test_round_trip_random_cells(crystal):
    atoms, n_slots = crystal
    coords, lattice = encode(atoms, n_slots=n_slots)
    assert np.all((coords == NULL) | ((coords >= 0) & (coords < 1)))
    assert np.array_equal(occupied(coords).sum(), len(atoms))
    assert_same_crystal(atoms, decode(coords, lattice), tol=1e-5)
    # one more atom of a full element exceeds L
    counts = np.bincount(atoms.numbers)
    z = int(np.argmax(counts))
    if counts[z] == n_slots:
        extra = atoms + Atoms(numbers=[z], scaled_positions=[[0.5, 0.5, 0.5]], cell=atoms.cell, pbc=True)
        with pytest.raises(RepresentationError, match=f"{n_slots + 1} atoms of .* exceed L = {n_slots}"):
            encode(extra, n_slots=n_slots)


@pytest.mark.parametrize("z", range(1, MAX_Z + 1))
def test_every_element_at_the_l_boundary(z):
    n_slots = 4
    rng = np.random.default_rng(z)
    cell = np.diag([5.0, 6.0, 7.0]) + rng.normal(size=(3, 3)) * 0.5
    atoms = Atoms(numbers=[z] * n_slots, cell=cell, scaled_positions=rng.random((n_slots, 3)), pbc=True)
    coords, lattice = encode(atoms, n_slots=n_slots)
    assert np.all(occupied(coords)[:, cell_of(z)[0], cell_of(z)[1]])
    assert_same_crystal(atoms, decode(coords, lattice))
    atoms.append(z)
    with pytest.raises(RepresentationError, match=f"5 atoms of {atoms[0].symbol} exceed L = 4"):
        encode(atoms, n_slots=n_slots)


def test_left_handed_cell_becomes_right_handed_with_same_geometry(rng):
    right = Atoms("NaCl2", cell=[[4, 0, 0], [1, 5, 0], [0.5, 0.3, 6]], scaled_positions=rng.random((3, 3)), pbc=True)
    left = Atoms(right.numbers, cell=right.cell[[1, 0, 2]], positions=right.positions, pbc=True)
    assert np.linalg.det(left.cell[:]) < 0
    decoded = decode(*encode(left))
    assert np.linalg.det(decoded.cell[:]) > 0
    assert_same_crystal(left, decoded)
    np.testing.assert_allclose(decoded.get_all_distances(mic=True), left.get_all_distances(mic=True), atol=1e-5)


# ------------------------------------------------------------------------------------------ bad inputs


def nacl(**kwargs) -> Atoms:
    return Atoms("NaCl", cell=np.eye(3) * 5.6, scaled_positions=[[0, 0, 0], [0.5, 0.5, 0.5]], pbc=True, **kwargs)


def test_non_periodic_structure():
    atoms = nacl()
    atoms.pbc = [True, True, False]
    with pytest.raises(RepresentationError, match=r"not periodic in all three directions \(pbc=\[True, True, False\]\)"):
        encode(atoms)


def test_zero_volume_cell():
    atoms = Atoms("NaCl", cell=[[5, 0, 0], [0, 5, 0], [5, 5, 0]], positions=[[0, 0, 0], [1, 1, 0]], pbc=True)
    with pytest.raises(RepresentationError, match="cell volume 0 A\\^3 is zero or degenerate"):
        encode(atoms)


def test_disordered_pymatgen_structure():
    from pymatgen.core import Lattice, Structure

    structure = Structure(Lattice.cubic(4.0), [{"Fe": 0.5, "Co": 0.5}, "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    with pytest.raises(RepresentationError, match=r"disordered structure \(partial occupancy\)"):
        encode(structure)


def test_dummy_species_and_z0_are_outside_the_table():
    from pymatgen.core import DummySpecies, Lattice, Structure

    structure = Structure(Lattice.cubic(4.0), [DummySpecies("X"), "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    with pytest.raises(RepresentationError, match="element X0\\+ is outside the periodic-table grid"):
        encode(structure)
    atoms = nacl()
    atoms.numbers[0] = 0
    with pytest.raises(RepresentationError, match="atomic number 0 is outside the periodic-table grid"):
        encode(atoms)


def test_too_many_atoms_of_one_element():
    atoms = Atoms("Si3", cell=np.eye(3) * 5, scaled_positions=np.eye(3) * 0.3, pbc=True)
    with pytest.raises(RepresentationError, match="3 atoms of Si exceed L = 2 slots per element"):
        encode(atoms, n_slots=2)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf(bad):
    atoms = nacl()
    atoms.positions[1, 2] = bad
    with pytest.raises(RepresentationError, match="NaN or infinite cell or positions"):
        encode(atoms)
    atoms = nacl()
    atoms.cell[2, 2] = bad
    with pytest.raises(RepresentationError, match="NaN or infinite"):
        encode(atoms)


def test_empty_structure_and_wrong_type():
    with pytest.raises(RepresentationError, match="no atoms"):
        encode(Atoms(cell=np.eye(3) * 3, pbc=True))
    with pytest.raises(RepresentationError, match="expected ase.Atoms or pymatgen Structure, got str"):
        encode("NaCl")


def test_decode_rejects_bad_tensors():
    coords, lattice = encode(nacl())
    with pytest.raises(RepresentationError, match="coords must have shape"):
        decode(coords[0], lattice)
    with pytest.raises(RepresentationError, match="lattice must be 6 finite numbers"):
        decode(coords, [1, 2, 3])
    with pytest.raises(RepresentationError, match="invalid lattice parameters"):
        decode(coords, [5, 5, -5, 90, 90, 90])
    with pytest.raises(RepresentationError, match="give no 3-D cell"):
        lattice_to_cell([5, 5, 5, 170, 170, 170])
    bad = coords.copy()
    bad[0, 5, 2] = 0.5  # the empty group-3 cell of period 6
    with pytest.raises(RepresentationError, match="grid cells that hold no element"):
        decode(bad, lattice)


# ------------------------------------------------------------------------------------------ helpers


def test_order_within_an_element_is_lexicographic(rng):
    atoms = Atoms("O6", cell=np.eye(3) * 6, scaled_positions=rng.random((6, 3)), pbc=True)
    coords, _ = encode(atoms, n_slots=8)
    slots = coords[:, cell_of(8)[0], cell_of(8)[1]]  # (8, 3)
    filled = slots[:6]
    assert np.all(slots[6:] == NULL)
    assert [tuple(r) for r in filled] == sorted(tuple(r) for r in filled)
    assert np.array_equal(canonical_order(permute_slots(coords, rng=rng)), coords)


def test_permute_slots_shuffles_within_elements_only(rng):
    atoms = Atoms("Mg4Si2O8", cell=np.eye(3) * 7, scaled_positions=rng.random((14, 3)), pbc=True)
    coords, lattice = encode(atoms)
    permuted = permute_slots(coords, rng=np.random.default_rng(5))
    again = permute_slots(coords, rng=np.random.default_rng(5))
    assert np.array_equal(permuted, again)
    assert not np.array_equal(permuted, coords)
    assert np.array_equal(occupied(permuted), occupied(coords))
    assert_same_crystal(decode(coords, lattice), decode(permuted, lattice), tol=1e-7)
    batch = np.stack([coords, coords])
    assert permute_slots(batch, rng=rng).shape == batch.shape


def test_batch_forms_match_single(rng):
    structures = [nacl(), Atoms("Si2", cell=np.eye(3) * 5, scaled_positions=rng.random((2, 3)), pbc=True)]
    coords, lattice = encode_batch(structures, n_slots=3)
    assert coords.shape == (2, 3, 9, 18, 3) and lattice.shape == (2, 6)
    for i, structure in enumerate(structures):
        single = encode(structure, n_slots=3)
        assert np.array_equal(coords[i], single[0]) and np.allclose(lattice[i], single[1])
    decoded = decode_batch(coords, lattice)
    assert [a.get_chemical_formula() for a in decoded] == ["ClNa", "Si2"]
    assert np.array_equal(composition_of(coords)[0][cell_of(11)], 1)
    with pytest.raises(RepresentationError, match="batched coords"):
        decode_batch(coords[0], lattice)


def test_to_structure():
    structure = to_structure(decode(*encode(nacl())))
    assert structure.composition.reduced_formula == "NaCl"


def test_lattices_to_cells_matches_lattice_to_cell_row_by_row():
    from ase_unimat.core.representation import lattice_to_cell, lattices_to_cells

    rng = np.random.default_rng(7)
    angles = rng.choice([60.0, 90.0, 120.0, 109.47], (400, 3))
    angles[::3] = rng.uniform(40.0, 140.0, (len(angles[::3]), 3))
    lattices = np.column_stack([rng.uniform(1.0, 12.0, (400, 3)), angles])
    good = []
    for row in lattices:
        try:
            good.append(lattice_to_cell(row))
        except RepresentationError:
            good.append(None)
    keep = np.array([cell is not None for cell in good])
    assert 0 < keep.sum() < len(keep)  # both kinds occur
    cells = lattices_to_cells(lattices[keep])
    np.testing.assert_allclose(cells, np.array([c for c in good if c is not None]), atol=1e-12)
    for row in lattices[~keep][:20]:  # every row the single version refuses is refused here too
        with pytest.raises(RepresentationError):
            lattices_to_cells(row[None])


def test_atom_slots_are_the_decoded_atoms_in_order():
    atoms = Atoms("O2CuNaO", scaled_positions=[[0.1, 0.2, 0.3], [0.5, 0.5, 0.5], [0.0, 0.0, 0.0], [0.7, 0.1, 0.2],
                                                [0.3, 0.8, 0.6]], cell=[4.0, 5.0, 6.0], pbc=True)  # fmt: skip
    coords, lattice = encode(atoms)
    slot, row, col = atom_slots(coords)
    decoded = decode(coords, lattice)
    assert len(slot) == len(decoded) == 5
    np.testing.assert_allclose(coords[slot, row, col], decoded.get_scaled_positions(), atol=1e-6)
    assert [cell_of(z) for z in decoded.numbers] == list(zip(row.tolist(), col.tolist(), strict=True))
