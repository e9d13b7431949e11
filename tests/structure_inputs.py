"""Test inputs for the readers and the converter: every input format, with good and broken records."""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ase import Atoms

from ase_unimat.data.readers import iter_raw, parse_cif


@dataclass
class InputCase:
    """One input of one format: its path, the ids that convert and the skip reasons expected."""

    path: Path
    good_ids: list[str]
    skipped: dict[str, str] = field(default_factory=dict)  # record id -> reason


def good_cifs(shared_data: Path, n: int = 3) -> list[tuple[str, str]]:
    """``n`` (material_id, cif) pairs of MP-20 val structures with 7-20 atoms."""
    out = []
    for raw in iter_raw(shared_data / "mp_20" / "val.csv.gz"):
        if 7 <= len(parse_cif(raw.payload)) <= 20:
            out.append((raw.record_id, raw.payload))
        if len(out) == n:
            return out
    raise RuntimeError("not enough MP-20 structures")


def _atom_line(cif: str) -> str:
    return next(line for line in cif.splitlines() if line.startswith("  ") and line.strip().endswith(" 1")
                and len(line.split()) == 7)


def broken_cifs(cif: str) -> dict[str, tuple[str, str]]:
    """reason -> (id, cif) for a malformed, a disordered, an unknown-element and a too-large CIF."""
    from pymatgen.io.cif import CifWriter

    line = _atom_line(cif)
    symbol = line.split()[0]
    disordered = cif.replace(line, line[: line.rstrip().rfind(" ")] + " 0.5")
    unknown = cif.replace(line, line.replace(f"  {symbol}  {symbol}", "  Xx  Xx", 1))
    big = parse_cif(cif, fast=False)
    big.make_supercell([3, 1, 1])
    return {
        "parse_error": ("bad-malformed", cif[: len(cif) // 3]),
        "disordered": ("bad-disordered", disordered),
        "unknown_element": ("bad-unknown", unknown),
        "too_many_atoms": ("bad-big", str(CifWriter(big))),
    }


def atoms_of(cif: str) -> Atoms:
    return parse_cif(cif)


def broken_atoms(cif: str) -> dict[str, tuple[str, Atoms]]:
    """reason -> (id, Atoms) for an unknown-element, a too-large and a non-periodic structure."""
    unknown = atoms_of(cif)
    unknown.numbers[0] = 0
    big = atoms_of(cif).repeat((3, 1, 1))
    flat = atoms_of(cif)
    flat.pbc = False
    return {"unknown_element": ("bad-unknown", unknown), "too_many_atoms": ("bad-big", big),
            "not_periodic": ("bad-flat", flat)}


def write_csv(path: Path, rows: list[tuple[str, str]], *, properties: bool = True) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["", "material_id", "e_above_hull", "spacegroup.number", "cif"])
    for i, (record_id, cif) in enumerate(rows):
        writer.writerow([i, record_id, f"{0.01 * i:.3f}", 100 + i, cif])
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wt", encoding="utf-8") as handle:
        handle.write(buffer.getvalue())


def make_inputs(tmp: Path, shared_data: Path) -> dict[str, InputCase]:
    """Write one input per format into ``tmp``: format name -> :class:`InputCase`."""
    from ase.db import connect
    from ase.io import write
    from ase.io.res import Res

    goods = good_cifs(shared_data)
    good_ids = [g[0] for g in goods]
    bad = broken_cifs(goods[0][1])
    cases: dict[str, InputCase] = {}
    cif_rows = goods + list(bad.values())
    cif_skips = {rid: reason for reason, (rid, _) in bad.items()}

    write_csv(tmp / "structures.csv.gz", cif_rows)
    cases["csv"] = InputCase(tmp / "structures.csv.gz", good_ids, cif_skips)

    folder = tmp / "cifs"
    folder.mkdir()
    for record_id, cif in cif_rows:
        (folder / f"{record_id}.cif").write_text(cif)
    (folder / "notes.txt").write_text("not a structure")
    cases["dir"] = InputCase(folder, sorted(good_ids), cif_skips)

    archive = tmp / "cifs.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        meta = "material_id,e_above_hull,spacegroup\n" + "".join(f"{rid},0.5,P1\n" for rid, _ in cif_rows)
        for name, text in [("set/metadata.csv", meta)] + [(f"set/mp_{rid}.cif", cif) for rid, cif in cif_rows]:
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    cases["tar"] = InputCase(archive, good_ids, cif_skips)

    frames = [(rid, atoms_of(cif)) for rid, cif in goods]
    bad_atoms = broken_atoms(goods[0][1])
    atom_skips = {rid: reason for reason, (rid, _) in bad_atoms.items()}
    all_frames = frames + list(bad_atoms.values())
    for rid, atoms in all_frames:
        atoms.info["material_id"] = rid
        atoms.info["e_above_hull"] = 0.25

    xyz = io.StringIO()
    for _, atoms in all_frames:
        write(xyz, atoms, format="extxyz")
    text = xyz.getvalue()
    lines = text.splitlines(keepends=True)
    broken_frame = lines[: 2 + len(frames[0][1])]
    broken_frame[1] = broken_frame[1].replace("material_id=" + frames[0][0], "material_id=bad-frame")
    broken_frame[2] = broken_frame[2].split()[0] + " 0.0 abc 0.0\n"
    (tmp / "frames.extxyz").write_text("".join(broken_frame) + text)
    cases["xyz"] = InputCase(tmp / "frames.extxyz", good_ids, {**atom_skips, "frames.extxyz:0": "parse_error"})

    write(tmp / "frames.traj", [a for _, a in all_frames])
    cases["traj"] = InputCase(tmp / "frames.traj", good_ids, atom_skips)

    with connect(tmp / "frames.db") as db:
        for rid, atoms in all_frames:
            db.write(atoms, material_id=rid, e_above_hull=0.125)
    cases["db"] = InputCase(tmp / "frames.db", good_ids, atom_skips)

    res_dir = tmp / "res"
    res_dir.mkdir()
    for rid, atoms in frames + [bad_atoms["too_many_atoms"]]:
        (res_dir / f"{rid}.res").write_text(Res(atoms, name=rid).get_string())
    (res_dir / "bad-malformed.res").write_text("TITL broken\nCELL 1.0 a b\nEND\n")
    unknown_res = Res(frames[0][1], name="x").get_string()
    symbol = frames[0][1][0].symbol
    (res_dir / "bad-unknown.res").write_text(unknown_res.replace(f"\n{symbol} ", "\nXx ").replace(f" {symbol} ", " Xx ", 1))
    cases["res"] = InputCase(res_dir, sorted(good_ids), {"bad-big": "too_many_atoms", "bad-malformed": "parse_error",
                                                         "bad-unknown": "unknown_element"})
    return cases


def first(iterable, n: int):
    return list(itertools.islice(iterable, n))


def random_cell_atoms(rng: np.random.Generator, n: int) -> Atoms:
    return Atoms(numbers=rng.integers(1, 90, n), cell=np.diag([5.0, 6.0, 7.0]), scaled_positions=rng.random((n, 3)),
                 pbc=True)
