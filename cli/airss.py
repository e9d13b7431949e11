"""``unimat-airss``: AIRSS-style relax-and-rank search with any ASE calculator, and its report.

Click structure: a group whose default command is ``run``, so ``unimat-airss --formula F ...`` and
``unimat-airss run --formula F ...`` are the same; ``unimat-airss report DIR`` re-ranks a run
directory and draws its pictures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from ase_unimat.cli.options import CONTEXT, FormulaUnits, option, out_option, quiet_option

from ase_unimat.core.messages import one_line

EXAMPLES = """
\b
Examples:
  unimat-airss --formula Mg2SiO4 --formula-units 1-2 -n 50 --calculator chgnet --workers 2
  unimat-airss --formula SiO2 -n 20 --seeds mixed:0.7 --calculator chgnet --pressure 10 --out sio2_10GPa
  unimat-airss --formula NaCl -n 30 --seeds unimat:0.5,template:0.3,random:0.2 --calculator chgnet --plot
  unimat-airss --formula Sr2CuF6 -n 20 --seeds unimat-template --unimat-strength 0.2,0.5 --calculator chgnet
  unimat-airss --cell Al2O3.cell -n 40 --seeds random --calculator emt --out al2o3
  unimat-airss --formula Si -n 4 --formula-units 2 --seeds random --calculator espresso --time-limit 600
  unimat-airss --formula SiC --formula-units 1-4 -n 60 --calculator chgnet --refine espresso --refine-top 5 \
      --refine-opt ecutwfc=30 --refine-opt kpts=4x4x4
  unimat-airss --formula SiC -n 20 --seeds file:sic_run --calculator chgnet --calc-opt device=cuda --out sic_rerank
  unimat-airss --formula CuAu -n 100 --seeds random --calculator emt --scheduler tcp://10.0.0.5:8786
  unimat-airss report sio2_10GPa
"""

#: Option types several options share.
POSITIVE = click.FloatRange(min=0, min_open=True)
COUNT = click.IntRange(min=1)
EXISTING = click.Path(exists=True, path_type=Path)
EXISTING_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


class _RunByDefault(click.Group):
    """A group that runs ``run`` when the first argument names no sub-command."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_RunByDefault, epilog=EXAMPLES, context_settings=CONTEXT)
def main() -> None:
    """Crystal-structure search: make seeds (UniMat, random, templates), relax them, unite and rank.

    Without a sub-command the options go to ``run`` (see ``unimat-airss run --help``); ``report DIR``
    re-ranks a finished or interrupted run directory and draws its PNG pictures.
    """


@main.command("run", epilog=EXAMPLES)
@click.option("--formula", type=str, default=None, help="Composition to search, e.g. Mg2SiO4 (or give --cell).")
@click.option("--cell", "cell_file", type=EXISTING_FILE, default=None,
              help="AIRSS buildcell seed file (#SPECIES/#NATOM/#MINSEP/...) instead of --formula.")
@click.option(
    "--formula-units",
    type=FormulaUnits(),
    default=None,
    help="Formula units per cell: N or a range LOW-HIGH (drawn per seed, reproducibly).  "
    "[default: 1-4, or the seed file's #NFORM]",
)
@click.option("-n", "n", type=COUNT, default=10, show_default=True, help="Number of seeds in the run.")
@click.option(
    "--seeds",
    type=str,
    default="unimat-template",
    show_default=True,
    help="Seed sources: unimat (sampled from noise), unimat-template (UniMat denoising of noised "
    "prototype templates), unimat-sym (sampled from noise inside each template's symmetry), random, random-sym (random with AIRSS SYMMOPS 2-4), template, mixed:F (F unimat, rest random) or weights like "
    "unimat:0.5,template:0.3,random:0.2, or file:PATH (structures from a file, folder, glob or earlier run "
    "directory).",
)
@option(
    "--calculator",
    "--calc",
    hidden=("--calc",),
    type=str,
    default="chgnet",
    show_default=True,
    help="Calculator: emt, chgnet, sevenn, espresso or module:factory (your own).",
)
@click.option(
    "--calc-opt",
    "--calculator-opt",
    "calc_opts",
    type=str,
    multiple=True,
    metavar="KEY=VALUE",
    help="Option of --calculator (repeatable), e.g. device=cuda, model=0.3.0; for espresso ecutwfc=30, kpts=4x4x4 "
    "or kspacing=0.3, pseudo_dir=DIR, pseudopotentials.Si=Si.pz-vbc.UPF, smearing=0.01|none.",
)
@click.option(
    "--calc-config",
    type=EXISTING_FILE,
    default=None,
    help="TOML file of calculator options: top level or [calculator] for --calculator, [refine] for --refine "
    "(--calc-opt / --refine-opt override it).",
)
@click.option(
    "--refine",
    type=str,
    default=None,
    is_flag=False,
    flag_value="",
    metavar="CALC",
    help="Second level: relax the --refine-top best unique structures again with this calculator "
    "(e.g. espresso), from their first-level geometry; results in OUT/refine.",
)
@click.option("--refine-top", type=int, default=None,
              help="How many unique first-level structures --refine relaxes again (>= 1).  [default: 5]")
@click.option(
    "--refine-opt",
    "refine_opts",
    type=str,
    multiple=True,
    metavar="KEY=VALUE",
    help="Option of the --refine calculator (repeatable; the keys of --calc-opt).",
)
@click.option("--refine-time-limit", type=POSITIVE, default=None,
              help="Wall-time limit per --refine relaxation in seconds  [default: --time-limit].")
@click.option("--refine-max-steps", type=COUNT, default=None,
              help="Optimizer steps per --refine relaxation  [default: --max-steps].")
@click.option("--pressure", type=float, default=0.0, show_default=True, help="External pressure in GPa.")
@click.option("--fmax", type=POSITIVE, default=0.05, show_default=True, help="Force tolerance (eV/Å).")
@click.option("--max-steps", type=COUNT, default=500, show_default=True, help="Optimizer steps per seed.")
@click.option("--optimizer", type=click.Choice(["FIRE", "BFGS"], case_sensitive=False), default="FIRE",
              show_default=True, help="ASE optimizer on the FrechetCellFilter.")
@click.option("--time-limit", type=POSITIVE, default=None,
              help="Wall-time limit per seed in seconds (a seed past it is recorded as failed).")
@click.option("--workers", type=COUNT, default=1, show_default=True,
              help="Local worker processes (one BLAS/torch thread each).")
@click.option("--scheduler", type=str, default=None, help="Dask scheduler address (tcp://HOST:PORT) to relax on.")
@out_option(
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Run directory (rerun the same command to resume).  [default: airss_<formula>]",
)
@option("--run-seed", "--seed", "run_seed", hidden=("--seed",), type=click.IntRange(min=0), default=0, show_default=True,
        help="Seed of the whole run (seed k depends only on it, the source and k).")
@click.option("--model", type=click.Path(path_type=Path), default=None,
              help="UniMat model for unimat seeds: checkpoint (.pt), model folder, or model name in models/ "
              "(e.g. unimat-mp-wide)  [default: bundled model].")
@option(
    "--template-reference",
    "--templates",
    hidden=("--templates",),
    type=EXISTING,
    default=None,
    help="Reference structures (HDF5 or CIF folder) for template seeds  [default: bundled].",
)
@option(
    "--unimat-strength",
    "--strength",
    hidden=("--strength",),
    type=str,
    default=None,
    help="Noise level(s) in (0, 1] for unimat-template seeds: one value, or a comma list, one per pass "
    "over the ranked templates  [default: 0.3,0.5].",
)
@click.option(
    "--ordered-templates/--no-ordered-templates",
    default=True,
    show_default=True,
    help="Template-based seeds also use ordered substitution (two elements ordered on one element's sites "
    "of a parent structure); --no-ordered-templates: prototype substitution alone.",
)
@click.option("--db", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Also write an ASE database.")
@click.option("--plot", is_flag=True, help="Draw the report PNGs into OUT/report.")
@quiet_option(help="No per-seed progress lines; print only the final table.")
def run_command(**options: Any) -> None:
    """Relax N seeds of a formula (or .cell file) and print the ranked, deduplicated structures.

    Writes one AIRSS .res per relaxed seed (OUT/res), the unique structures with their times found
    (OUT/unique), the ranking (OUT/ranked.csv); rerunning the same command resumes, a larger -n adds
    seeds.
    """
    try:
        from ase_unimat.search.airss_command import run_search  # imported when the command runs: --help stays instant

        run = run_search(options, say=None if options["quiet"] else lambda line: click.echo(line, err=True))
    except (ValueError, OSError, ImportError) as err:
        raise click.ClickException(one_line(err)) from None
    click.echo(run.summary())


@main.command("report", epilog=EXAMPLES)
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@out_option(
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for the PNGs  [default: RUN_DIR/report].",
)
@click.option("--top", type=COUNT, default=20, show_default=True, help="Rows of the table to print.")
def report_command(run_dir: Path, out: Path | None, top: int) -> None:
    """Re-rank a run directory (finished or not), print its table and draw its PNG pictures."""
    try:
        from ase_unimat.search.airss_command import rerank  # optional dependencies (matplotlib)

        paths = rerank(run_dir, out=out, top=top, say=click.echo)
    except (ValueError, OSError) as err:
        raise click.ClickException(one_line(err)) from None
    click.echo("pictures: " + ", ".join(str(p) for p in paths))


if __name__ == "__main__":
    main()
