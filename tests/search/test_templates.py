"""Prototype substitution: lookup, element mapping, volume rescaling, duplicates, supercells, readers."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import spglib
from ase.build import bulk
from ase.io import write
from ase.spacegroup import crystal

from ase_unimat.search.templates import NoTemplateError, TemplateIndex
from ase_unimat.search.volume import sphere_volume


def space_group(atoms) -> int:
    return spglib.get_symmetry_dataset((atoms.cell[:], atoms.get_scaled_positions(), atoms.numbers), symprec=1e-3).number


def nias():
    """NiAs (P6_3/mmc): Ni on 2a, As on 2c; swapping the elements gives a different structure."""
    return crystal(["Ni", "As"], [(0, 0, 0), (1 / 3, 2 / 3, 0.25)], spacegroup=194, cellpar=[3.6, 3.6, 5.0, 90, 90, 120])


@pytest.fixture
def reference():
    structures = [bulk("NaCl", "rocksalt", a=5.64), bulk("MgO", "rocksalt", a=4.21), bulk("CsCl", "cesiumchloride", a=4.12),
                  nias(), bulk("Si", "diamond", a=5.43), bulk("Cu", "fcc", a=3.61)]
    ids = ["nacl", "mgo", "cscl", "nias", "si", "cu"]
    return structures, ids


def test_nacl_template_gives_rocksalt_kbr_with_scaled_volume(reference):
    index = TemplateIndex.from_atoms(*reference)
    best = index.candidates({"K": 1, "Br": 1})[0]
    assert best.material_id in ("nacl", "mgo")
    assert best.mapping in ({"Na": "K", "Cl": "Br"}, {"Mg": "K", "O": "Br"})
    atoms = best.atoms
    assert sorted(atoms.get_chemical_symbols()) == ["Br", "K"]
    assert space_group(atoms) == 225
    template = reference[0][reference[1].index(best.material_id)]
    expected = template.get_volume() * sphere_volume({"K": 1, "Br": 1}) / sphere_volume(template.symbols.formula.count())
    assert atoms.get_volume() == pytest.approx(expected, rel=1e-9)
    assert atoms.info["template_id"] == best.material_id


def test_duplicate_prototypes_are_united(reference):
    candidates = TemplateIndex.from_atoms(*reference).candidates({"K": 1, "Br": 1})
    assert [space_group(c.atoms) for c in candidates] == [225, 221]
    # NaCl and MgO, each either way round, are one rocksalt candidate; CsCl swapped is CsCl again.
    assert [c.n_duplicates for c in candidates] == [3, 1]
    assert candidates[0].prior <= candidates[1].prior


def test_swapped_prototypes_that_differ_are_both_kept(reference):
    candidates = TemplateIndex.from_atoms(*reference).candidates({"Fe": 2, "S": 2})
    hexagonal = [c for c in candidates if c.material_id == "nias"]
    assert len(hexagonal) == 2  # NiAs and anti-NiAs are different structures
    # Electronegativity order maps the cation Ni to the cation Fe first.
    assert hexagonal[0].mapping == {"Ni": "Fe", "As": "S"} and hexagonal[0].prior < hexagonal[1].prior
    assert candidates[0].material_id == "nias"  # full-size templates come before supercells


def test_supercell_templates_fill_more_formula_units(reference):
    candidates = TemplateIndex.from_atoms(*reference).candidates({"K": 2, "Br": 2})
    doubled = [c for c in candidates if c.supercell == 2]
    assert {space_group(c.atoms) for c in doubled} == {225, 221}
    assert all(len(c.atoms) == 4 and c.atoms.get_chemical_symbols().count("K") == 2 for c in doubled)
    assert [c.supercell for c in candidates] == sorted(c.supercell for c in candidates)


def test_no_template_is_a_clear_error(reference):
    index = TemplateIndex.from_atoms(*reference)
    with pytest.raises(NoTemplateError, match="no template for Mg2SiO4.*AB2C4 with 7 atoms"):
        index.candidates({"Mg": 2, "Si": 1, "O": 4})


def test_exclude_ids_leaves_one_out(reference):
    index = TemplateIndex.from_atoms(*reference)
    ids = {c.material_id for c in index.candidates({"Na": 1, "Cl": 1}, exclude_ids={"nacl"})}
    assert "nacl" not in ids and "mgo" in ids
    with pytest.raises(NoTemplateError):
        index.candidates({"Ge": 2}, exclude_ids={"si"}, max_supercell=1)


def test_readers_agree(reference, tmp_path):
    from ase_unimat.core.representation import encode_batch
    from ase_unimat.data.hdf5 import write_structures

    structures, ids = reference
    sparse = tmp_path / "ref.h5"
    write_structures(sparse, structures, material_ids=ids)
    dense = tmp_path / "dense.h5"
    coords, lattice = encode_batch(structures)
    with h5py.File(dense, "w") as h5:
        h5["coords"], h5["lattice"] = coords, lattice
        h5["material_id"] = np.array(ids, dtype=object).astype("S")
    cifs = tmp_path / "cifs"
    cifs.mkdir()
    for atoms, name in zip(structures, ids, strict=True):
        write(cifs / f"{name}.cif", atoms)
    results = []
    for ref in (sparse, dense, cifs):
        candidates = TemplateIndex.load(ref).candidates({"K": 1, "Br": 1})
        results.append([(c.material_id, round(c.atoms.get_volume(), 3), space_group(c.atoms)) for c in candidates])
    assert results[0] == results[1] == results[2]
    assert len(TemplateIndex.load(sparse)) == len(ids)


def test_missing_reference_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no template reference file"):
        TemplateIndex.load(tmp_path / "missing.h5")
    with pytest.raises(FileNotFoundError, match="no .cif files"):
        TemplateIndex.load(tmp_path)
