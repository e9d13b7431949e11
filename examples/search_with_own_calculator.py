"""Run a relax-and-rank search with your own ASE calculator object.

Any ASE calculator works: swap ``EMT()`` below for ``CHGNetCalculator()``, ``SevenNetCalculator()``,
``Espresso(...)``, ``Vasp(...)``... The search relaxes each seed in a variable cell, writes AIRSS
``.res`` files into ``--out`` and prints the ranked unique structures. Run the same command again
to resume; a larger ``-n`` adds seeds.

    python examples/search_with_own_calculator.py --formula CuAu -n 6 --out cuau_run
"""

from __future__ import annotations

import argparse

from ase.calculators.emt import EMT

from ase_unimat import Search
from ase_unimat.search.rank import format_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--formula", default="CuAu", help="composition (EMT knows Al Cu Ag Au Ni Pd Pt)")
    parser.add_argument("-n", type=int, default=4, help="number of seeds")
    parser.add_argument("--seeds", default="random", help="unimat, random, template or a mix")
    parser.add_argument("--out", default="own_calculator_run", help="run directory")
    args = parser.parse_args()

    calculator = EMT()  # <- your own calculator object here
    search = Search(
        args.formula,
        calculator=calculator,
        seeds=args.seeds,
        n=args.n,
        formula_units=(1, 2),
        pressure=0.0,  # GPa
        fmax=0.05,
        out=args.out,
        run_seed=0,
    )

    def progress() -> None:  # an observer, attached as to an ASE optimizer
        r = search.last_result
        print(f"{r.id}: {r.status} {r.enthalpy:.4f} eV {r.spacegroup} in {r.steps} steps")

    search.attach(progress)
    ranking = search.run()
    print(format_table(ranking))


if __name__ == "__main__":  # needed whenever a search uses worker processes
    main()
