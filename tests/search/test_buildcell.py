"""AIRSS seed files: realistic examples, directive semantics and clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from ase_unimat.search.buildcell import CellFileError, parse_cell, read_cell

SRTIO3_CELL = """\
%BLOCK LATTICE_CART
3.914865 0 0
0 3.914865 0
0 0 3.914865
%ENDBLOCK LATTICE_CART

#VARVOL=60

%BLOCK POSITIONS_FRAC
Sr 0.0 0.0 0.0 # Sr1 % NUM=1
Ti 0.0 0.0 0.0 # Ti1 % NUM=1
O 0.0 0.0 0.0 # O1 % NUM=1
O 0.0 0.0 0.0 # O2 % NUM=1
O 0.0 0.0 0.0 # O3 % NUM=1
%ENDBLOCK POSITIONS_FRAC

##SGRANK=20
#NFORM=2
#SYMMOPS=2-4
#SLACK=0.25
#OVERLAP=0.1
#COMPACT
#MINSEP=1.5 Sr-Sr=3.0 Ti-Ti=2.8 O-O=2.2 Sr-O=2.2 Ti-O=1.7 Sr-Ti=3.0

KPOINTS_MP_SPACING 0.07
SYMMETRY_GENERATE
SNAP_TO_SYMMETRY

%BLOCK SPECIES_POT
QC5
%ENDBLOCK SPECIES_POT

%BLOCK EXTERNAL_PRESSURE
0 0 0
0 0
0
%ENDBLOCK EXTERNAL_PRESSURE
"""

LI_SI_CELL = """\
#SPECIES=Li%NUM=2,Si%NUM=1
#NFORM=2
#TARGVOL=30-36
#MINSEP=1.8 Li-Li=2.4 Li-Si=2.5 Si-Si=2.3   ! pair-specific separations
"""


def test_airss_al_example_volume_from_lattice(al_cell):
    spec = parse_cell(al_cell(8, 1.5))
    assert spec.counts == {"Al": 8} and spec.nform == 1
    assert spec.options.minsep == 1.5
    lo, hi = spec.options.volume_range(spec.counts)
    assert lo == pytest.approx(64 * 0.95) and hi == pytest.approx(64 * 1.05)  # 8 A^3 per line x 8 atoms
    seeds = spec.source().make(spec.counts, [0, 1, 2], run_seed=0)
    for seed in seeds:
        assert seed.source == "cell" and len(seed.atoms) == 8
        d = seed.atoms.get_all_distances(mic=True)
        assert d[np.triu_indices(8, 1)].min() >= 1.5 - 1e-6


def test_realistic_srtio3_seed_file(tmp_path):
    path = tmp_path / "SrTiO3.cell"
    path.write_text(SRTIO3_CELL)
    spec = read_cell(path)
    assert spec.path == str(path)
    assert spec.seed_counts == {"Sr": 1, "Ti": 1, "O": 3} and spec.nform == 2
    assert spec.counts == {"Sr": 2, "Ti": 2, "O": 6}
    options = spec.options
    assert options.symmops == (2, 4) and options.slack == 0.25 and options.overlap == 0.1 and options.compact
    assert options.minsep == 1.5 and options.minsep_of("O", "Sr") == 2.2 and options.minsep_of("Ti", "O") == 1.7
    assert options.volume_per_atom == (12.0, 12.0)  # 60 A^3 over five lines
    assert "KPOINTS_MP_SPACING 0.07" in spec.ignored and "%BLOCK SPECIES_POT" in spec.ignored
    seeds = spec.source().make(spec.counts, [0, 1], run_seed=4)
    for seed in seeds:
        assert sorted(seed.atoms.get_chemical_symbols()) == sorted(["Sr"] * 2 + ["Ti"] * 2 + ["O"] * 6)
        assert seed.atoms.info["n_symmops"] >= 2


def test_nform_override_and_species_directive():
    spec = parse_cell(LI_SI_CELL)
    assert spec.counts == {"Li": 4, "Si": 2}
    assert spec.options.volume_per_atom == (15.0, 18.0)  # per #SPECIES entry
    assert spec.options.minsep_of("Si", "Li") == 2.5
    assert parse_cell(LI_SI_CELL, nform=3).counts == {"Li": 6, "Si": 3}


def test_natom_for_one_species():
    spec = parse_cell("#SPECIES=C\n#NATOM=8\n#VARVOL=10\n#MINSEP=1.3\n")
    assert spec.counts == {"C": 8} and spec.options.volume_per_atom == (10.0, 10.0)


def test_fixed_lattice(al_cell):
    text = al_cell(8, 1.5).replace("0 0 2\n%ENDBLOCK", "0 0 2\n#FIX\n%ENDBLOCK").replace("2 0 0", "4 0 0").replace("0 2 0", "0 4 0")
    text = text.replace("0 0 2\n", "0 0 4\n").replace("NUM=8", "NUM=4")
    spec = parse_cell(text)
    atoms = spec.source().make(spec.counts, [0], run_seed=0)[0].atoms
    assert np.allclose(atoms.cell[:], np.diag([4.0, 4.0, 4.0]))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("#SPECIES=Si%NUM=2\n#CELLADAPT\n", "unsupported buildcell directive #CELLADAPT"),
        ("#SPECIES=Si%NUM=2\n#SYSTEM=Cubi\n", "#SYSTEM"),
        ("#SPECIES=Si%NUM=2\n#MINSEP=AUTO\n", "AUTO"),
        ("#SPECIES=Li,Si\n#NATOM=2-8\n", "variable"),
        ("#SPECIES=Li,Si\n#NATOM=6\n", "variable-composition"),
        ("#SPECIES=Si%NUM=2\n#NFORM=1-4\n", "one positive integer"),
        ("%BLOCK POSITIONS_FRAC\nH 0 0 0 # H2 % NUM=1\nH 0 0 0.7 # H2\n%ENDBLOCK POSITIONS_FRAC\n", "molecular unit"),
        ("%BLOCK POSITIONS_FRAC\nSi 0 0 0 # Si1 % POSAMP=0\n%ENDBLOCK POSITIONS_FRAC\n", "POSAMP"),
        ("%BLOCK POSITIONS_FRAC\nXx 0 0 0\n%ENDBLOCK POSITIONS_FRAC\n", "unknown element"),
        ("%BLOCK POSITIONS_FRAC\nSi 0 0 0\n", "never closed"),
        ("#MINSEP=1.5\n", "no atoms"),
        ("#SPECIES=Si%NUM=2\n#SLACK=1.5\n", "SLACK"),
    ],
)
def test_errors_name_the_problem(text, message):
    with pytest.raises(CellFileError, match=message):
        parse_cell(text)


def test_missing_file(tmp_path):
    with pytest.raises(CellFileError, match="cannot read"):
        read_cell(tmp_path / "nope.cell")
