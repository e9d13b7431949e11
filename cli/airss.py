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
@click.option(
    "--cell",
    "cell_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="AIRSS buildcell seed file (#SPECIES/#NATOM/#MINSEP/...) instead of --formula.",
)
@click.option(
    "--formula-units",
    type=FormulaUnits(),
    default=None,
    help="Formula units per cell: N or a range LOW-HIGH (drawn per seed, reproducibly).  "
    "[default: 1-4, or the seed file's #NFORM]",
)
@click.option("-n", "n", type=click.IntRange(min=1), default=10, show_default=True, help="Number of seeds in the run.")
@click.option(
    "--seeds",
    type=str,
    default="unimat-template",
    show_default=True,
    help="Seed sources: unimat (sampled from noise), unimat-template (UniMat denoising of noised "
    "prototype templates), random, random-sym (random with AIRSS SYMMOPS 2-4), template, mixed:F (F unimat, rest random) or weights like "
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
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
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
@click.option(
    "--refine-top",
    type=int,
    default=None,
    help="How many unique first-level structures --refine relaxes again (>= 1).  [default: 5]",
)
@click.option(
    "--refine-opt",
    "refine_opts",
    type=str,
    multiple=True,
    metavar="KEY=VALUE",
    help="Option of the --refine calculator (repeatable; the keys of --calc-opt).",
)
@click.option(
    "--refine-time-limit",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Wall-time limit per --refine relaxation in seconds  [default: --time-limit].",
)
@click.option(
    "--refine-max-steps",
    type=click.IntRange(min=1),
    default=None,
    help="Optimizer steps per --refine relaxation  [default: --max-steps].",
)
@click.option("--pressure", type=float, default=0.0, show_default=True, help="External pressure in GPa.")
@click.option(
    "--fmax",
    type=click.FloatRange(min=0, min_open=True),
    default=0.05,
    show_default=True,
    help="Force tolerance (eV/Å).",
)
@click.option(
    "--max-steps", type=click.IntRange(min=1), default=500, show_default=True, help="Optimizer steps per seed."
)
@click.option(
    "--optimizer",
    type=click.Choice(["FIRE", "BFGS"], case_sensitive=False),
    default="FIRE",
    show_default=True,
    help="ASE optimizer on the FrechetCellFilter.",
)
@click.option(
    "--time-limit",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Wall-time limit per seed in seconds (a seed past it is recorded as failed).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Local worker processes (one BLAS/torch thread each).",
)
@click.option("--scheduler", type=str, default=None, help="Dask scheduler address (tcp://HOST:PORT) to relax on.")
@out_option(
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Run directory (rerun the same command to resume).  [default: airss_<formula>]",
)
@option("--run-seed", "--seed", "run_seed", hidden=("--seed",), type=click.IntRange(min=0), default=0, show_default=True,
        help="Seed of the whole run (seed k depends only on it, the source and k).")
@click.option(
    "--model",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="UniMat model (checkpoint or folder) for unimat seeds  [default: bundled model].",
)
@option(
    "--template-reference",
    "--templates",
    hidden=("--templates",),
    type=click.Path(exists=True, path_type=Path),
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
    formula, cell_file = options["formula"], options["cell_file"]
    if (formula is None) == (cell_file is None):
        raise click.ClickException("give exactly one of --formula or --cell")
    label = Path(cell_file).stem if cell_file else "".join(formula.split())
    out = options["out"] or Path(f"airss_{label}")
    refine, refine_top = _refine_choice(options)
    client = None
    try:
        from ase_unimat.search.search import Search  # imported when the command runs: --help stays instant

        calc_options, refine_options = _calculator_options(options)
        executor = None
        workers = options["workers"]
        if options["scheduler"]:
            client, executor = _dask_executor(options["scheduler"])
            workers = max(workers, sum(client.nthreads().values()))
        search = Search(
            cell_file if cell_file else formula,
            calculator=options["calculator"],
            calculator_options=calc_options,
            seeds=options["seeds"],
            n=options["n"],
            formula_units=options["formula_units"],
            pressure=options["pressure"],
            fmax=options["fmax"],
            max_steps=options["max_steps"],
            optimizer=options["optimizer"],
            time_limit=options["time_limit"],
            workers=workers,
            executor=executor,
            out=out,
            run_seed=options["run_seed"],
            model=options["model"],
            template_reference=options["template_reference"],
            unimat_strength=_parse_strength(options["unimat_strength"]),
            ordered_templates=options["ordered_templates"],
            db=options["db"],
            plot=options["plot"],
            refine=refine,
            refine_options=refine_options if refine is not None else None,
            refine_top=refine_top,
            refine_settings=_refine_settings(options) if refine is not None else None,
        )
        if not options["quiet"]:
            search.attach(_progress_printer(search))
        ranking = search.run()
    except (ValueError, OSError, ImportError) as err:
        raise click.ClickException(_one_line(err)) from None
    finally:
        if client is not None:
            client.close()
    from ase_unimat.search.rank import format_table  # imported when the command runs: --help stays instant

    if refine is None:
        click.echo(format_table(ranking))
    else:
        from ase_unimat.search.refine import format_refined_table

        click.echo("first level:\n" + format_table(search.ranking, limit=refine_top))
        click.echo("\n" + format_refined_table(ranking, calculator=refine, first_calculator=options["calculator"]))
    refined = ", refine/" if refine is not None else ""
    click.echo(f"results in {out}/ (ranked.csv, res/, unique/{refined}{', report/' if options['plot'] else ''})")


@main.command("report", epilog=EXAMPLES)
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@out_option(
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for the PNGs  [default: RUN_DIR/report].",
)
@click.option("--top", type=click.IntRange(min=1), default=20, show_default=True, help="Rows of the table to print.")
def report_command(run_dir: Path, out: Path | None, top: int) -> None:
    """Re-rank a run directory (finished or not), print its table and draw its PNG pictures."""
    try:
        from ase_unimat.search.rank import format_table, rank, write_csv  # optional dependency
        from ase_unimat.search.report import make_report  # optional dependency
        from ase_unimat.search.store import RunStore  # optional dependency

        store = RunStore(run_dir)
        if not store.manifest_path.is_file():
            raise ValueError(f"{run_dir} is not a unimat-airss run directory (no manifest.json)")
        ranking = rank(store.results())
        write_csv(ranking, run_dir / "ranked.csv")
        click.echo(format_table(ranking, limit=top))
        _report_refined(run_dir)
        paths = make_report(run_dir, out=out)
    except (ValueError, OSError) as err:
        raise click.ClickException(_one_line(err)) from None
    click.echo("pictures: " + ", ".join(str(p) for p in paths))


def _report_refined(run_dir: Path) -> None:
    """The final-level table of a two-level run (``RUN_DIR/refine``), when it has one."""
    from ase_unimat.search.rank import rank
    from ase_unimat.search.refine import REFINE_DIR, format_refined_table, write_refined_csv
    from ase_unimat.search.store import RunStore

    store = RunStore(run_dir / REFINE_DIR)
    if not store.manifest_path.is_file():
        return
    manifest = store.read_manifest()
    ranking = rank(store.results())
    write_refined_csv(ranking, store.root / "ranked.csv")
    table = format_refined_table(ranking, calculator=manifest.get("calculator", ""),
                                 first_calculator=manifest.get("first_calculator", ""))  # fmt: skip
    click.echo("\n" + table)


def _refine_settings(options: dict[str, Any]) -> dict[str, Any]:
    """The second level's relaxation settings that differ from the first's."""
    keys = {"refine_time_limit": "time_limit", "refine_max_steps": "max_steps"}
    return {field: options[name] for name, field in keys.items() if options[name] is not None}


def _refine_choice(options: dict[str, Any]) -> tuple[str | None, int]:
    """(refine calculator or None, refine top) from the options, refusing half-given ones."""
    refine, top = options["refine"], options["refine_top"]
    if refine is not None and (not refine.strip() or refine.startswith("-")):
        raise click.ClickException("--refine needs a second calculator, e.g. --refine espresso")
    halves = {"--refine-top": top, "--refine-opt": options["refine_opts"] or None,
              "--refine-time-limit": options["refine_time_limit"], "--refine-max-steps": options["refine_max_steps"]}  # fmt: skip
    given = next((name for name, value in halves.items() if value is not None), None)
    if refine is None and given is not None:
        raise click.ClickException(f"{given} needs --refine CALC (the second-level calculator)")
    if top is not None and top < 1:
        raise click.ClickException(f"--refine-top must be >= 1 (structures to refine), got {top}")
    return refine, 5 if top is None else top


def _calculator_options(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(--calculator options, --refine options): the --calc-config tables overridden by --calc-opt / --refine-opt."""
    from ase_unimat.search.calc_options import parse_assignments, read_config

    calc, refine = read_config(options["calc_config"]) if options["calc_config"] else ({}, {})
    for base, pairs in ((calc, options["calc_opts"]), (refine, options["refine_opts"])):
        for key, value in parse_assignments(pairs).items():
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                base[key] = {**base[key], **value}
            else:
                base[key] = value
    return calc, refine


def _progress_printer(search: Any) -> Any:
    def show() -> None:
        r = search.last_result
        status = f"H={r.enthalpy:.4f} eV {r.spacegroup or ''}" if r.ok else f"FAILED: {r.reason}"
        if r.seed_info.get("level") == 2:
            click.echo(f"[refine {len(search.refined)}] {r.id} {r.steps} steps {r.wall_time:.1f} s {status}", err=True)
            return
        click.echo(f"[{len(search.results)}] {r.id} {r.steps} steps {r.wall_time:.1f} s {status}", err=True)

    return show


def _dask_executor(address: str) -> tuple[Any, Any]:
    try:
        from dask.distributed import Client  # optional: pip install '.[dask]'
    except ImportError:
        raise ImportError("--scheduler needs dask[distributed] (pip install 'dask[distributed]')") from None
    try:
        client = Client(address, timeout=20)
    except OSError as err:
        raise OSError(f"cannot reach Dask scheduler {address}: {err}") from None
    return client, client.get_executor()


def _parse_strength(text: str | None) -> tuple[float, ...] | None:
    """``--unimat-strength 0.3,0.5`` as numbers (range checks happen in ``Search``)."""
    if text is None:
        return None
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise click.ClickException(f"--unimat-strength must be numbers in (0, 1] separated by commas, got {text!r}") from None


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text


if __name__ == "__main__":
    main()
