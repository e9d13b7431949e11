"""``unimat-eval``: generative metrics (and optionally CHGNet stability) of generated structures."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import click
from ase_unimat.cli.options import CONTEXT, option, out_option, quiet_option

from ase_unimat.core.messages import one_line

DATASETS = ("mp_20", "carbon_24", "perov_5")

EXAMPLES = """
\b
Examples:
  unimat-eval samples.extxyz --reference ../shared/data/mp_20/test.csv.gz --out metrics.json
  unimat-eval seeds_dir/ --reference data/mp20_test.h5 --limit 200
  unimat-eval csp.extxyz --reference ../shared/data/mp_20/test.csv.gz --csp --k 20
  unimat-eval samples.extxyz --reference ../shared/data/mp_20/test.csv.gz --stability --workers 2
"""


def read_structures(path: Path, *, limit: int | None = None) -> list[Any]:
    """Atoms from any input the converter reads (see :mod:`ase_unimat.data.readers`) or a UniMat HDF5 file."""
    # imported when the command runs: --help stays instant
    from ase_unimat.data.hdf5 import read_atoms
    from ase_unimat.data.readers import read_structures as read_input
    from ase_unimat.data.records import RecordError

    if path.name.lower().endswith((".h5", ".hdf5")):
        try:
            return read_atoms(path)[:limit]
        except (OSError, KeyError, ValueError) as err:  # not HDF5, or not a UniMat file
            raise click.ClickException(f"cannot read {path}: {one_line(err, empty='')}") from None
    try:
        return read_input(path, limit=limit)
    except (RecordError, ValueError) as err:
        raise click.ClickException(one_line(err, empty="")) from None


def _predictions_of(predictions: list[Any], references: list[Any], *, k: int) -> list[Any]:
    """The predictions that belong to ``references``: by ``material_id`` when all have one, else the first ``k`` each."""
    ref_ids = [getattr(r, "info", {}).get("material_id") for r in references]
    pred_ids = [getattr(p, "info", {}).get("material_id") for p in predictions]
    if all(ref_ids) and all(pred_ids):
        kept = set(ref_ids)
        return [p for p, pid in zip(predictions, pred_ids, strict=True) if pid in kept]
    return predictions[: k * len(references)]


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@click.command(epilog=EXAMPLES, context_settings=CONTEXT)
@click.argument("generated", type=click.Path(exists=True, path_type=Path))
@click.option("--reference", "reference", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Reference structures: CSV with a 'cif' column (e.g. mp_20/test.csv.gz) or UniMat HDF5.")
@click.option("--dataset", type=click.Choice(DATASETS), default="mp_20", show_default=True,
              help="Which published coverage cutoffs to use.")
@click.option("--csp", is_flag=True, help="Also score crystal-structure prediction (match rate, RMSE at 1 and k).")
@click.option("--k", "k", type=click.IntRange(min=1), default=1, show_default=True,
              help="CSP predictions per reference when pairing by order (no material_id in the files).")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Read at most this many structures from each input (with --csp: references only, all their "
              "predictions are scored).  [default: all]")
@click.option("--stability", is_flag=True,
              help="Relax with the calculator and compute energy above hull, uniqueness, novelty, S.U.N.")
@option("--calculator", "--calc", "calculator", hidden=("--calc",), default="chgnet", show_default=True,
        help="Calculator for --stability.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Relaxation processes for --stability (one thread each).")
@click.option("--data", "data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Shared data folder for hull phases and novelty.  [default: $UNIMAT_SHARED_DATA or ../shared/data]")
@click.option("--hull-cache", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("~/.cache/ase-unimat/hull_energies.json"), show_default=True,
              help="JSON cache of relaxed competing-phase energies.")
@out_option(type=click.Path(dir_okay=False, path_type=Path), default=Path("metrics.json"),
              show_default=True, help="Where to write the metrics as JSON.")
@quiet_option(help="No progress bars or stage lines; print only the metrics.")
def main(generated: Path, reference: Path, dataset: str, csp: bool, k: int, limit: int | None, stability: bool,
         calculator: str, workers: int, data_dir: Path | None, hull_cache: Path, out: Path, quiet: bool) -> None:  # fmt: skip
    """Validity, coverage, Wasserstein distances (and CSP match) of GENERATED against --reference.

    GENERATED is an extxyz/CIF file, a folder of .cif/.res files, a CSV with a 'cif' column or a
    UniMat HDF5 file. Metrics follow CDVAE/DiffCSP (see ase_unimat/metrics.py).
    """
    from ase_unimat.evaluation.metrics import evaluate  # imported when the command runs: --help stays instant

    references = read_structures(reference, limit=limit)
    if csp and limit is not None:  # limit the references only; every prediction of a kept reference is scored
        structures = _predictions_of(read_structures(generated), references, k=k)
    else:
        structures = read_structures(generated, limit=limit)
    if not structures:
        raise click.ClickException(f"no structures in {generated}")
    click.echo(f"{len(structures)} generated, {len(references)} reference structures")
    try:
        result = evaluate(structures, references, dataset=dataset, csp=csp, k=k, progress=not quiet)
        if stability:
            result["stability"] = _stability(structures, calculator, workers, data_dir, hull_cache.expanduser(), quiet)
    except (ValueError, FileNotFoundError) as err:
        raise click.ClickException(str(err)) from None
    except ImportError as err:  # an optional metrics dependency (smact, matminer, ...)
        name = err.name or "a metrics dependency"
        raise click.ClickException(f"{name} is not installed: pip install 'ase-unimat[metrics]'") from None
    result["inputs"] = {"generated": str(generated), "reference": str(reference), "dataset": dataset}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(_clean(result), indent=1) + "\n")
    for section, values in result.items():
        if section in ("inputs",):
            continue
        shown = {key: v for key, v in values.items() if isinstance(v, int | float)}
        click.echo(f"{section}: " + ", ".join(f"{key}={v:.4g}" for key, v in shown.items()))
    click.echo(f"wrote {out}")


def _stability(structures: list[Any], calculator: str, workers: int, data_dir: Path | None, cache_path: Path,
               quiet: bool) -> dict:  # fmt: skip
    from ase_unimat.evaluation.hull import EnergyCache
    from ase_unimat.evaluation.reference import HULL_SOURCES, TRAINING_SOURCES, load_reference_records
    from ase_unimat.evaluation.sun import stability_report
    from ase_unimat.search.relax import RelaxSettings  # imported when the command runs: --help stays instant

    return stability_report(
        structures,
        calculator=calculator,
        calculator_options={"threads": 1} if calculator == "chgnet" else None,
        cache=EnergyCache(cache_path),
        hull_records=load_reference_records(data_dir, sources=HULL_SOURCES),
        training_records=load_reference_records(data_dir, sources=TRAINING_SOURCES),
        settings=RelaxSettings(),
        workers=workers,
        data_dir=data_dir,
        progress=None if quiet else click.echo,
    )


if __name__ == "__main__":
    main()
