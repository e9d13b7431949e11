"""``unimat-sample``: sample crystal structures of one composition, or de novo, and write them to disk."""

from __future__ import annotations

from pathlib import Path

import click
from ase_unimat.cli.options import CONTEXT, FormulaUnits, check_writable, out_option, quiet_option

FORMATS = ("auto", "extxyz", "cif", "res")

EXAMPLES = """
\b
Examples:
  unimat-sample --formula Mg2SiO4 --formula-units 2 -n 20 --out mg2sio4.extxyz
  unimat-sample --model models/unimat-mp20 --formula NaCl -n 8 --steps 100 --out nacl.cif
  unimat-sample --formula TiO2 -n 50 --sampler ancestral --out tio2_seeds/ --format res
  unimat-sample -n 100 --out de_novo.extxyz                          # compositions from the training data
  unimat-sample -n 20 --elements Li,Fe,P,O --charge-balanced --out lfpo.extxyz
  unimat-sample --model runs/unimat-mp-wide/model.pt --formula SrTiO3 --spacegroup 221 --guidance 2 --out srtio3.cif
"""


@click.command(epilog=EXAMPLES, context_settings=CONTEXT)
@click.option("--model", "model", type=click.Path(path_type=Path), default=None,
              help="Checkpoint (.pt), model folder, or model name in models/ [default: the bundled model].")
@click.option("--formula", default=None, type=str,
              help="Chemical formula, e.g. Mg2SiO4 or Ca(OH)2 [default: de novo, compositions drawn per sample].")
@click.option("--elements", default=None, type=str,
              help="De novo: every structure holds exactly these elements (e.g. Li,Fe,P,O), in a stoichiometry "
                   "drawn from the training data.")
@click.option("--charge-balanced", is_flag=True,
              help="De novo: keep only SMACT charge-balanced compositions (CDVAE's composition validity).")
@click.option("--spacegroup", default="default", type=str, show_default=True,
              help="Space-group models: a number 1-230, 'auto' (drawn per structure from the training data of the "
                   "same stoichiometry) or 'none'; default: auto for a space-group model, none otherwise.")
@click.option("-n", "n", type=int, default=10, show_default=True, help="Number of structures (>= 1).")
@click.option("--formula-units", type=FormulaUnits(), default="1", show_default=True,
              help="Formula units per cell: N or a range LOW-HIGH (drawn per structure from its seed; with --formula).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Structure i uses seed SEED + i (reproducible one by one).")
@click.option("--steps", type=click.IntRange(min=1), default=None, help="Sampler steps [default: the model's].")
@click.option("--guidance", type=float, default=None,
              help="Classifier-free guidance weight w >= 0 on the model's condition (space group, or the dense "
                   "network's composition); refused by a model with nothing to guide [default: the model's].")
@click.option("--sampler", type=click.Choice(["ddim", "ancestral"]), default="ancestral", show_default=True,
              help="ddim: deterministic, few steps; ancestral: stochastic SDE with corrector.")
@click.option("--device", type=str, default="auto", show_default=True, help="auto (CUDA when available), cpu, cuda.")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True,
              help="Structures sampled together.")
@out_option(required=True, type=click.Path(path_type=Path),
              help="Output: FILE.extxyz, FILE.cif, or a folder for one AIRSS .res file per structure.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="auto", show_default=True,
              help="Output format (auto: from the --out suffix).")
@quiet_option(help="No progress bar.")
def main(model, formula, elements, charge_balanced, spacegroup, n, formula_units, seed, steps, guidance, sampler,
         device, batch_size, out, fmt, quiet) -> None:  # fmt: skip
    """Sample N crystal structures of FORMULA, or de novo (no --formula), with a UniMat model."""
    # imported when the command runs: --help stays instant
    from ase_unimat.generation import sample_command as command
    from ase_unimat.search.search_seeds import formula_units_of

    try:
        command.check_options(n=n, guidance=guidance, formula=formula, elements=elements,
                              formula_units=formula_units, charge_balanced=charge_balanced)
        fmt = command.output_format(out, fmt)
        spacegroup = command.parse_spacegroup(spacegroup)
    except ValueError as err:
        raise click.ClickException(str(err)) from None
    check_writable(out if fmt == "res" else out.parent, what=out)  # before the sampling, not after it
    try:
        # Structure i has seed SEED + i; with a range, its formula units are drawn from that seed too.
        structures = command.sample(
            formula, n, seed=seed, units_of=lambda i: formula_units_of(i, formula_units, run_seed=seed),
            elements=elements, charge_balanced=charge_balanced, spacegroup=spacegroup, model=model,
            guidance=guidance, steps=steps, sampler=sampler, device=device, batch_size=batch_size,
            progress=not quiet,
        )  # fmt: skip
    except (ValueError, FileNotFoundError) as err:
        raise click.ClickException(str(err)) from None
    try:
        paths = command.write_structures(structures, out, fmt)
    except OSError as err:
        raise click.ClickException(f"cannot write {out}: {err.strerror or err}") from None
    click.echo(command.summary(structures, paths, out, fmt, formula=formula, formula_units=formula_units))


if __name__ == "__main__":
    main()
