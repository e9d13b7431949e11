"""``python -m bench``: list the project's benchmarks or run one (from the repository root)."""

from __future__ import annotations

import os
from pathlib import Path

import click

EXAMPLES = """
\b
Examples:
  python -m bench --list
  python -m bench search_efficiency --quick
  python -m bench search_efficiency --out /tmp/bench_results
  python -m bench gpu --dry-run --out /tmp/gpu_dry
"""


@click.command(epilog=EXAMPLES, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("name", required=False)
@click.option("--list", "list_only", is_flag=True, help="List the benchmarks and exit.")
@click.option("--quick", is_flag=True, help="The benchmark's short mode (minutes, for CI and smoke runs).")
@click.option("--dry-run", is_flag=True,
              help="The same code at tiny sizes (seconds; e.g. a GPU benchmark on the CPU), for benchmarks that have one.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for the JSON (and plots); default bench/results.",
)
@click.option("--package", default="bench", show_default=True, help="Python package to discover benchmarks in.")
def main(name: str | None, list_only: bool, quick: bool, dry_run: bool, out: Path | None, package: str) -> None:
    """Run one benchmark NAME and write its JSON to bench/results (or --out).

    A benchmark is a module bench/bench_<name>.py defining run(*, quick, out_dir) -> dict.
    """
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from bench import BenchmarkError, describe, run_benchmark, scan

    try:
        benchmarks, problems = scan(package)
    except (ImportError, BenchmarkError) as err:
        raise click.ClickException(str(err)) from None
    if list_only or name is None:
        if not benchmarks:
            click.echo("no benchmarks found")
        for bench_name, module_name in benchmarks.items():
            click.echo(f"{bench_name:24s} {describe(module_name)}")
        for module_name, problem in problems.items():
            click.echo(f"(skipped {module_name}: {problem})")
        if name is None and not list_only:
            click.echo("\nrun one with: python -m bench NAME [--quick] [--dry-run]")
        return
    try:
        run_benchmark(name, quick=quick, dry_run=dry_run, out_dir=out, package=package, say=click.echo)
    except BenchmarkError as err:
        raise click.ClickException(str(err)) from None


if __name__ == "__main__":
    main()
