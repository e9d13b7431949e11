"""Swap UniMat into an ASE genetic-algorithm start population (``ase_ga``, formerly ``ase.ga``).

The classic script builds its first generation with ``StartGenerator(slab, blocks, blmin,
number_of_variable_cell_vectors=3, ...)``. ``UniMatStartGenerator`` takes the same arguments and
returns UniMat structures from ``get_new_candidate()``; everything after it (the database, the
pairing and mutation operators, the relaxations) stays as it was. Here the first generation goes
into an ``ase_ga`` database, unrelaxed, ready for the usual GA loop.

    python examples/ga_start_population.py --formula Cu4Au4 --population 6 --db ga.db   # bundled model
    python examples/ga_start_population.py --formula Cu4Au4 --population 6 --model my_model.pt
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ase import Atoms
from ase.data import atomic_numbers
from ase_ga.data import PrepareDB
from ase_ga.utilities import closest_distances_generator

from ase_unimat.core.formula import parse_formula
from ase_unimat.generation import UniMatStartGenerator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--formula", default="Cu4Au4", help="cell composition (EMT: Al Cu Ag Au Ni Pd Pt)")
    parser.add_argument("--population", type=int, default=6, help="structures in the first generation")
    parser.add_argument("--model", help="UniMat model (checkpoint, folder or name); default: the bundled one")
    parser.add_argument("--db", default="ga_start.db", help="ase_ga database to create")
    parser.add_argument("--steps", type=int, default=None, help="sampler steps (default: the model's)")
    args = parser.parse_args()

    counts = parse_formula(args.formula)
    blocks = [(symbol, n) for symbol, n in counts.items()]
    slab = Atoms(pbc=True)  # bulk search: an empty periodic "slab"
    blmin = closest_distances_generator([atomic_numbers[s] for s in counts], ratio_of_covalent_radii=0.5)

    # was: StartGenerator(slab, blocks, blmin, number_of_variable_cell_vectors=3, cellbounds=..., ...)
    generator = UniMatStartGenerator(slab, blocks, blmin, number_of_variable_cell_vectors=3, model=args.model,
                                     steps=args.steps, device="cpu", batch_size=args.population)

    Path(args.db).unlink(missing_ok=True)
    database = PrepareDB(args.db, simulation_cell=slab, stoichiometry=[atomic_numbers[s] for s, n in blocks
                                                                       for _ in range(n)])
    for i in range(args.population):
        candidate = generator.get_new_candidate(maxiter=100)
        database.add_unrelaxed_candidate(candidate, description=f"unimat seed {candidate.info.get('seed')}")
        print(f"candidate {i}: {candidate.get_chemical_formula()} V = {candidate.get_volume():.1f} A^3 "
              f"(seed {candidate.info.get('seed')})")
    print(f"wrote {args.population} start candidates to {args.db}")


if __name__ == "__main__":
    main()
