"""AIRSS .res files: exact TITL layout, read back by ase.io and pymatgen's AirssProvider, atomic writes."""

from __future__ import annotations

import re

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.io import read
from pymatgen.io.res import AirssProvider

from ase_unimat.search import airss_io
from ase_unimat.search.airss_io import read_res, spacegroup_symbol, write_res

TITL = re.compile(
    r"^TITL (?P<name>\S+) (?P<p>\S+) (?P<v>\S+) (?P<h>\S+) 0(\.0)? 0(\.0)? (?P<n>\d+) \((?P<sg>\S+)\) n - (?P<t>\d+)$"
)


def _triclinic() -> Atoms:
    rng = np.random.default_rng(7)
    cell = np.array([[4.1, 0.0, 0.0], [0.9, 4.4, 0.0], [-0.7, 0.6, 5.2]])
    return Atoms("Mg2SiO4", scaled_positions=rng.random((7, 3)), cell=cell, pbc=True)


STRUCTURES = {
    "fcc-Cu": (lambda: bulk("Cu", "fcc", a=3.61), "Fm-3m"),
    "hcp-Mg": (lambda: bulk("Mg", "hcp", a=3.21, c=5.21), "P6_3/mmc"),
    "rocksalt-NaCl": (lambda: bulk("NaCl", "rocksalt", a=5.64), "Fm-3m"),
    "diamond-Si": (lambda: bulk("Si", "diamond", a=5.43), "Fd-3m"),
    "triclinic": (_triclinic, "P1"),
}


@pytest.mark.parametrize("key", sorted(STRUCTURES))
def test_spacegroup_from_spglib(key):
    build, symbol = STRUCTURES[key]
    assert spacegroup_symbol(build()) == symbol


@pytest.mark.parametrize("key", sorted(STRUCTURES))
@pytest.mark.parametrize(("pressure", "enthalpy", "times_found"), [(0.0, -12.345678, 1), (25.5, 3.25, 7)])
def test_res_round_trip_with_ase_and_pymatgen(tmp_path, key, pressure, enthalpy, times_found):
    build, symbol = STRUCTURES[key]
    atoms = build()
    path = write_res(
        tmp_path / f"{key}.res",
        atoms,
        name=f"{key}-random-000003",
        pressure=pressure,
        enthalpy=enthalpy,
        times_found=times_found,
    )
    title = path.read_text().splitlines()[0]
    match = TITL.match(title)
    assert match, title
    assert match["name"] == f"{key}-random-000003" and int(match["n"]) == len(atoms) and match["sg"] == symbol

    by_ase = read(path)
    assert by_ase.info["name"] == f"{key}-random-000003"
    assert by_ase.info["pressure"] == pytest.approx(pressure)
    assert by_ase.info["spacegroup"] == symbol
    assert by_ase.info["times_found"] == times_found
    assert by_ase.get_potential_energy() == pytest.approx(enthalpy, abs=1e-6)
    assert by_ase.get_volume() == pytest.approx(atoms.get_volume(), rel=1e-5)
    assert by_ase.get_chemical_symbols() == atoms.get_chemical_symbols()
    np.testing.assert_allclose(by_ase.get_scaled_positions(), atoms.get_scaled_positions(wrap=True), atol=2e-6)

    by_pymatgen = AirssProvider.from_file(str(path))
    assert by_pymatgen.seed == f"{key}-random-000003"
    assert by_pymatgen.pressure == pytest.approx(pressure)
    assert by_pymatgen.energy == pytest.approx(enthalpy, abs=1e-6)
    assert by_pymatgen.volume == pytest.approx(atoms.get_volume(), rel=1e-5)
    assert by_pymatgen.spacegroup_label == symbol
    assert by_pymatgen.appearances == times_found
    assert [site.specie.symbol for site in by_pymatgen.structure] == atoms.get_chemical_symbols()

    assert read_res(path).info["enthalpy"] == pytest.approx(enthalpy, abs=1e-6)


def test_given_spacegroup_is_written_verbatim(tmp_path):
    path = write_res(tmp_path / "a.res", bulk("Cu"), name="a", pressure=0, enthalpy=-1, spacegroup="P-1")
    assert "(P-1)" in path.read_text().splitlines()[0]


def test_names_with_whitespace_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="whitespace"):
        write_res(tmp_path / "a.res", bulk("Cu"), name="a b", pressure=0, enthalpy=-1)


def test_write_is_atomic_when_interrupted(tmp_path, monkeypatch):
    path = write_res(tmp_path / "x.res", bulk("Cu"), name="old", pressure=0, enthalpy=-1.0)
    before = path.read_text()

    def crash(filename, *args, **kwargs):
        with open(filename, "w") as handle:
            handle.write("TITL half-written")
        raise KeyboardInterrupt

    monkeypatch.setattr("ase.io.write", crash)
    with pytest.raises(KeyboardInterrupt):
        airss_io.write_res(path, bulk("Cu"), name="new", pressure=0, enthalpy=-2.0)
    assert path.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.res"]
