"""Make starting structures in a script: UniMat, random AIRSS-like, prototype templates, or a mix.

Every seed has a reproducible id and records where it came from; seed ``k`` depends only on
(run seed, source, k), so asking for more seeds later keeps the first ones. Writes one extended-XYZ
file with all seeds.

    python examples/generate_seeds.py --formula Mg2SiO4 -n 8 --seeds random
    python examples/generate_seeds.py --formula NaCl -n 8 --seeds template:0.5,random:0.5 --reference cifs/
    python examples/generate_seeds.py --formula Mg2SiO4 -n 8 --seeds mixed:0.5 --model models/unimat-mp20
    python examples/generate_seeds.py --cell Al.cell -n 4          # an AIRSS buildcell seed file
"""

from __future__ import annotations

import argparse

from ase.io import write

from ase_unimat.core.formula import parse_formula
from ase_unimat.search.buildcell import read_cell
from ase_unimat.search.seed_registry import make_seed_sources


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--formula", default="Mg2SiO4", help="composition of one formula unit")
    parser.add_argument("--formula-units", type=int, default=1, help="formula units per cell")
    parser.add_argument("--cell", help="AIRSS seed file (.cell); its directives replace --formula")
    parser.add_argument("-n", type=int, default=6, help="number of seeds")
    parser.add_argument("--seeds", default="random", help="unimat, random, template, mixed:F or a weighted mix")
    parser.add_argument("--model", help="UniMat model (checkpoint, folder or name); default: the bundled one")
    parser.add_argument("--reference", help="template reference: UniMat HDF5 or folder of CIFs")
    parser.add_argument("--run-seed", type=int, default=0, help="run seed")
    parser.add_argument("--out", default="seeds.extxyz", help="output file")
    args = parser.parse_args()

    cell_spec = read_cell(args.cell) if args.cell else None
    counts = cell_spec.counts if cell_spec else parse_formula(args.formula, formula_units=args.formula_units)
    source = make_seed_sources(args.seeds, model=args.model, template_reference=args.reference, cell_spec=cell_spec,
                               unimat_options={"device": "cpu"})
    seeds = source.make(counts, range(args.n), run_seed=args.run_seed)
    for seed in seeds:
        atoms = seed.atoms
        print(f"{seed.id:32s} {seed.source:9s} {atoms.get_chemical_formula():12s} V = {atoms.get_volume():7.1f} A^3")
        atoms.info["seed_id"] = seed.id
    write(args.out, [s.atoms for s in seeds], format="extxyz")
    print(f"wrote {len(seeds)} seeds to {args.out}")


if __name__ == "__main__":
    main()
