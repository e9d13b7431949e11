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


def output_format(out: Path, fmt: str) -> str:
    """The file format: explicit, or from the suffix (.extxyz/.xyz, .cif; no suffix: a folder of .res)."""
    if fmt != "auto":
        return fmt
    suffix = out.suffix.lower()
    if suffix in (".extxyz", ".xyz"):
        return "extxyz"
    if suffix == ".cif":
        return "cif"
    if suffix == "" or out.is_dir():
        return "res"
    raise click.ClickException(f"cannot tell the format of {out}: use .extxyz, .cif, a folder, or --format")


def write_structures(structures, out: Path, fmt: str) -> list[Path]:
    """Write Atoms as one extxyz/CIF file, or one AIRSS ``.res`` file per structure in folder ``out``."""
    # imported when the command runs: --help stays instant
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write  # imported when the command runs: --help stays instant

    if fmt in ("extxyz", "cif"):
        out.parent.mkdir(parents=True, exist_ok=True)
        write(out, structures, format=fmt)
        return [out]
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for atoms in structures:
        name = f"{atoms.get_chemical_formula(mode='metal', empirical=False)}-unimat-{int(atoms.info['seed']):06d}"
        res = atoms.copy()
        res.info = {"name": name, "pressure": 0.0, "spacegroup": "P1", "times_found": 1}
        # AIRSS TITL lines need an energy; an unrelaxed seed has none, so 0.0 is written.
        res.calc = SinglePointCalculator(res, energy=0.0)
        path = out / f"{name}.res"
        write(path, res, format="res", write_info=False)
        paths.append(path)
    return paths


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
    if n < 1:
        raise click.ClickException(f"-n must be at least 1, got {n}")
    if guidance is not None and not guidance >= 0:
        raise click.ClickException(f"--guidance must be >= 0, got {guidance}")
    if formula is not None and elements is not None:
        raise click.ClickException("give --formula or --elements, not both")
    if formula is None and tuple(formula_units) != (1, 1):
        raise click.ClickException("--formula-units needs --formula")
    if charge_balanced and formula is not None:
        raise click.ClickException("--charge-balanced applies to de novo sampling (no --formula)")
    fmt = output_format(out, fmt)
    spacegroup = parse_spacegroup(spacegroup)
    check_writable(out if fmt == "res" else out.parent, what=out)  # before the sampling, not after it
    from ase_unimat.generation import generate  # imported when the command runs: --help stays instant

    # Structure i has seed SEED + i; with a range, its formula units are drawn from that seed too.
    from ase_unimat.search.search_seeds import formula_units_of  # imported when the command runs: --help stays instant

    by_units: dict[int, list[int]] = {}
    for i in range(n):
        by_units.setdefault(formula_units_of(i, formula_units, run_seed=seed), []).append(i)
    structures = [None] * n
    try:
        if formula is None:
            structures = generate(
                None, n, elements=elements, charge_balanced=charge_balanced, spacegroup=spacegroup, model=model,
                guidance=guidance, steps=steps, sampler=sampler, seed=seed, device=device, batch_size=batch_size,
                progress=not quiet,
            )  # fmt: skip
        else:
            for units, indices in by_units.items():
                made = generate(
                    formula, formula_units=units, spacegroup=spacegroup, model=model, guidance=guidance,
                    steps=steps, sampler=sampler, seeds=[seed + i for i in indices], device=device,
                    batch_size=batch_size, progress=not quiet,
                )  # fmt: skip
                for i, atoms in zip(indices, made, strict=True):
                    structures[i] = atoms
    except (ValueError, FileNotFoundError) as err:
        raise click.ClickException(str(err)) from None
    try:
        paths = write_structures(structures, out, fmt)
    except OSError as err:
        raise click.ClickException(f"cannot write {out}: {err.strerror or err}") from None
    where = out if fmt != "res" else f"{out}/ ({len(paths)} .res files)"
    if formula is not None:
        units = formula_units[0] if formula_units[0] == formula_units[1] else "-".join(map(str, formula_units))
        what = f"of {formula} x{units}"
    else:
        what = f"de novo ({len({a.get_chemical_formula() for a in structures})} compositions)"
    click.echo(f"wrote {len(structures)} structures {what} to {where}")


def parse_spacegroup(text: str) -> int | str | None:
    """``--spacegroup``: ``default``, ``auto``, ``none`` or a number 1-230."""
    word = text.strip().lower()
    if word in ("default", "auto"):
        return word
    if word == "none":
        return None
    if not word.isdigit() or not 1 <= int(word) <= 230:
        raise click.ClickException(f"--spacegroup must be a number 1-230, 'auto' or 'none', got {text!r}")
    return int(word)


if __name__ == "__main__":
    main()
