"""Read a search's results back with pymatgen: the unique structures, their enthalpies and times found.

    python examples/read_results_with_pymatgen.py cuau_run

Every ``.res`` file in ``RUN/unique`` is an AIRSS file that ``pymatgen.io.res.AirssProvider`` reads
(``RUN/res`` holds one per relaxed seed). The lowest-enthalpy structure is also written as a CIF.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pymatgen.io.cif import CifWriter
from pymatgen.io.res import AirssProvider


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="run directory of unimat-airss or Search(out=...)")
    args = parser.parse_args()

    providers = [AirssProvider.from_file(str(path)) for path in sorted((args.run / "unique").glob("*.res"))]
    if not providers:
        raise SystemExit(f"no .res files in {args.run / 'unique'}; run a search first")
    per_atom = sorted(providers, key=lambda p: p.energy / len(p.structure))
    best = per_atom[0]
    print(f"{'name':<24} {'formula':<10} {'spg':<10} {'H/atom-best (eV)':>16} {'found':>6}")
    for p in per_atom:
        relative = p.energy / len(p.structure) - best.energy / len(best.structure)
        print(
            f"{p.seed:<24} {p.structure.composition.reduced_formula:<10} {p.spacegroup_label:<10} "
            f"{relative:16.4f} {p.appearances:6d}"
        )
    cif = args.run / f"{best.seed}.cif"
    CifWriter(best.structure, symprec=0.1).write_file(cif)
    print(
        f"lowest enthalpy: {best.seed} ({best.structure.composition.reduced_formula}, {best.spacegroup_label}) -> {cif}"
    )


if __name__ == "__main__":
    main()
