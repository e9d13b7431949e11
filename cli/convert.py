"""``unimat-convert``: build a UniMat HDF5 dataset from crystal files, and summarise one.

Two subcommands; ``build`` is the default, so ``unimat-convert INPUTS... -o OUT.h5`` means
``unimat-convert build INPUTS... -o OUT.h5``.
"""

from __future__ import annotations

import click
from ase_unimat.cli.options import CONTEXT, option, out_option, quiet_option

from ase_unimat.core.messages import one_line

EXAMPLES_BUILD = """
\b
Examples:
  unimat-convert ../shared/data/mp_20/train.csv.gz -o mp20_train.h5 --workers 2 \\
      --columns formation_energy_per_atom,e_above_hull,spacegroup=spacegroup.number
  unimat-convert 'cifs/*.cif' structures.traj runs.db -o mine.h5 --max-atoms 40 --L 40
  unimat-convert more.tar.gz -o mine.h5 --append --dedup --exclude ../shared/data/mp_20/test.csv.gz
"""

EXAMPLES_INFO = """
\b
Example:
  unimat-convert info mp20_train.h5
"""


class _DefaultGroup(click.Group):
    """A group that runs ``build`` when the first argument names no subcommand."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["build", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_DefaultGroup, context_settings=CONTEXT,
             epilog=EXAMPLES_BUILD + EXAMPLES_INFO)
def main() -> None:
    """Build (default) or inspect UniMat HDF5 datasets.

    INPUTS are CSV files with a `cif` column (.csv, .csv.gz), CIF / AIRSS .res files, folders or
    globs of them, .tar.gz archives of them, ASE databases (.db), extended XYZ and any multi-frame
    file ase.io reads (.traj, ...).
    """


@main.command(epilog=EXAMPLES_BUILD)
@click.argument("inputs", nargs=-1, required=True)
@out_option(required=True, type=click.Path(dir_okay=False), help="The HDF5 file to write.")
@option("--n-slots", "--L", "n_slots", hidden=("--L",), type=click.IntRange(1, 255), default=20, show_default=True,
        help="Atom slots per element (the tensor's L).")
@click.option("--max-atoms", type=click.IntRange(min=1), default=20, show_default=True,
              help="Skip structures with more atoms per cell.")
@click.option("--columns", default="", show_default=True,
              help="Properties to carry: NAME or NAME=SOURCE[|SOURCE...], comma-separated.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Processes that parse and encode.")
@click.option("--append", is_flag=True, help="Add to an existing OUT instead of refusing to touch it.")
@click.option("--overwrite", is_flag=True, help="Replace an existing OUT.")
@click.option("--dedup", is_flag=True, help="Skip a record whose id is already converted (in OUT or earlier).")
@click.option("--exclude", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Skip ids listed in this file (.h5 dataset, CSV with material_id, or one id per line); repeatable.")
@click.option("--exclude-formulas", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Skip every structure whose reduced formula is listed in this file (.h5 dataset, CSV with "
                   "reduced_formula/pretty_formula/formula, or one formula per line); repeatable.")
@click.option("--batch-size", type=click.IntRange(min=1), default=512, show_default=True,
              help="Input records per committed part (work redone after a kill).")
@quiet_option(help="No progress bar.")
def build(inputs: tuple[str, ...], out: str, n_slots: int, max_atoms: int, columns: str, workers: int,
          append: bool, overwrite: bool, dedup: bool, exclude: tuple[str, ...], exclude_formulas: tuple[str, ...], batch_size: int,
          quiet: bool) -> None:
    """Convert INPUTS into the dataset OUT; rerun the same command to resume after a crash.

    A bad record is skipped and listed with its reason in OUT.skipped.csv. An input that cannot
    be read to its end (truncated .gz, garbage .db/.tar.gz) is one error line naming it and where it
    stopped; everything read is still written to OUT, and the exit status is 1.
    """
    from ase_unimat.data.convert import convert  # imported when the command runs: --help stays instant
    from ase_unimat.data.convert_options import ConversionError, ConvertOptions, parse_columns

    try:
        options = ConvertOptions(n_slots=n_slots, max_atoms=max_atoms, columns=parse_columns(columns),
                                 workers=workers, append=append, overwrite=overwrite, dedup=dedup,
                                 exclude=tuple(exclude),
                                 exclude_formulas=tuple(exclude_formulas), batch_size=batch_size, progress=not quiet)
        summary = convert(inputs, out, options=options)
    except (ConversionError, ValueError, OSError) as err:
        raise click.ClickException(one_line(err, empty="")) from None
    click.echo(summary.text())
    if summary.unreadable:  # the output holds what was read; the exit status says it is not all
        raise click.ClickException(one_line(f"could not read to the end: {'; '.join(summary.unreadable)}; "
                                            f"the records read before are in {summary.output}"))


@main.command(epilog=EXAMPLES_INFO)
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--top", type=click.IntRange(min=1), default=118, show_default=True,
              help="Show at most this many elements in the element histogram.")
def info(path: str, top: int) -> None:
    """Summarise the dataset PATH: count, elements, atoms per cell, properties, history."""
    from ase_unimat.data.hdf5 import (  # imported when the command runs: --help stays instant
        DatasetFormatError,
        describe,
    )

    try:
        click.echo(describe(path, top=top))
    except (DatasetFormatError, OSError) as err:
        raise click.ClickException(one_line(err, empty="")) from None


if __name__ == "__main__":
    main()
