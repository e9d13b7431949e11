"""A two-level search: screen many seeds with a cheap calculator, relax the best few with the one you trust.

Here both levels are EMT so the script runs in seconds; for real use put ``calculator="chgnet"``
and ``refine="espresso"`` with ``refine_options={"ecutwfc": 30, "kpts": [4, 4, 4]}`` (or your own
``"mymodule:factory"``). Run it again to resume: nothing is relaxed twice at either level.

    python examples/two_level_search.py --formula CuAu -n 8 --top 3 --out cuau_two_level
"""

from __future__ import annotations

import argparse

from ase_unimat.search.refine import Refine, format_refined_table
from ase_unimat.search.search import Search


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--formula", default="CuAu", help="composition (EMT knows Al Cu Ag Au Ni Pd Pt)")
    parser.add_argument("-n", type=int, default=8, help="seeds relaxed at the first level")
    parser.add_argument("--top", type=int, default=3, help="unique structures relaxed again")
    parser.add_argument("--out", default="two_level_run", help="run directory")
    args = parser.parse_args()

    # First level: every seed, cheaply.
    search = Search(args.formula, calculator="emt", seeds="random", n=args.n, formula_units=(1, 2), out=args.out)
    search.run()
    # Second level: the best unique structures again, from their first-level geometry (out/refine).
    step = Refine(search, calculator="emt", top=args.top)
    for result in step.irun():
        print(f"refined {result.id} (first-level rank {result.seed_info['level1_rank']}): {result.status}")
    print(format_refined_table(step.rank(), calculator="emt", first_calculator="emt"))
    # The same in one object: Search(..., refine="emt", refine_top=args.top).run()


if __name__ == "__main__":  # needed whenever a search uses worker processes
    main()
