"""``unimat-train``: train a UniMat model from a TOML config (one process, or many under torchrun)."""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any

import click
from ase_unimat.cli.options import CONTEXT, out_option, quiet_option

EXAMPLES = """
\b
Examples:
  unimat-train test                                # the tiny shipped config, a smoke run
  unimat-train models/configs/cpu.toml --out runs/cpu
  unimat-train cpu --max-steps 2000 --set train.lr=5e-4 --set model.width=96
  unimat-train cpu --out runs/cpu                  # rerun after a crash or kill: resumes
  unimat-train cpu --out runs/cpu --keep-every 1000  # also keep checkpoint_00001000.pt, ... (every 1000)
  unimat-train cpu --out runs/cpu2 --init-from runs/cpu/model.pt  # warm start: weights on, fresh optimiser and LR
  torchrun --nproc_per_node 8 -m ase_unimat.cli.train models/configs/gpu.toml --out runs/gpu
"""


def parse_value(text: str) -> Any:
    """A ``--set`` value as TOML (``3``, ``2e-4``, ``true``, ``[1, 2]``, ``"x"``); anything else is a string."""
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(data: dict, assignments: tuple[str, ...]) -> dict:
    """Set ``section.key=value`` assignments in a config dict; ``click.BadParameter`` if malformed."""
    data = json.loads(json.dumps(data))  # a deep copy of plain data
    for assignment in assignments:
        key, sep, text = assignment.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or not name:
            raise click.BadParameter(f"expected SECTION.KEY=VALUE, got {assignment!r}", param_hint="--set")
        if not isinstance(data.get(section), dict):
            raise click.BadParameter(f"no config section [{section}] (in {assignment!r})", param_hint="--set")
        if name not in data[section]:
            raise click.BadParameter(
                f"[{section}] has no key {name!r}; it has {', '.join(sorted(data[section]))}", param_hint="--set"
            )
        data[section][name] = parse_value(text.strip())
    return data


def toml_text(data: dict) -> str:
    """A config dict (top-level scalars, then flat tables) as TOML text that ``tomllib`` reads back."""

    def literal(value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return repr(value)
        if isinstance(value, str):
            return json.dumps(value)
        if isinstance(value, list | tuple):
            return "[" + ", ".join(literal(v) for v in value) + "]"
        raise TypeError(f"cannot write {type(value).__name__} to TOML")

    lines = [f"{key} = {literal(value)}" for key, value in data.items() if not isinstance(value, dict)]
    for section, table in data.items():
        if isinstance(table, dict):
            lines += ["", f"[{section}]", *(f"{key} = {literal(value)}" for key, value in table.items())]
    return "\n".join(lines) + "\n"


@click.command(epilog=EXAMPLES, context_settings=CONTEXT)
@click.argument("config_name", metavar="CONFIG", type=str)
@out_option(type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder for checkpoints, log.jsonl and model.pt [default: train.out_dir of the config].")
@click.option("--resume/--no-resume", default=True, show_default=True,
              help="Continue from the newest checkpoint in the output folder, if there is one.")
@click.option("--max-steps", type=click.IntRange(min=1), default=None,
              help="Total optimiser steps (sets train.total_steps, hence the LR schedule) [default: the config's].")
@click.option("--set", "assignments", multiple=True, metavar="SECTION.KEY=VALUE",
              help="Override one config value, e.g. train.lr=3e-4 or model.width=64 (TOML values; repeatable).")
@click.option("--keep-every", type=click.IntRange(min=0), default=0, show_default=True,
              help="Also keep checkpoint_<step>.pt every N steps (0: only checkpoint_last.pt), e.g. to pick the "
                   "weights of the best validation loss from log.jsonl afterwards.")
@click.option("--init-from", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Start model and EMA from this exported model.pt (or checkpoint) of the same [model] architecture, "
                   "with a fresh optimiser and LR schedule (sets train.init_from; not re-applied when the run resumes).")
@quiet_option(help="No progress bar (rank 0 shows one otherwise).")
def main(config_name: str, out: Path | None, resume: bool, max_steps: int | None, assignments: tuple[str, ...],
         keep_every: int, init_from: Path | None, quiet: bool) -> None:  # fmt: skip
    """Train a UniMat model described by CONFIG (a TOML file, or test / cpu / gpu from models/configs).

    Checkpoints are written atomically every train.checkpoint_every steps and the run resumes
    exactly from the last one; the EMA weights end up in OUT/model.pt. Under torchrun every
    process runs this same command (DDP; NCCL on GPUs, gloo on CPUs).
    """
    from ase_unimat.model.checkpoint import CheckpointError  # torch takes seconds to import
    from ase_unimat.model.config import (  # imported when the command runs: --help stays instant
        ConfigError,
        from_dict,
        named_config,
        to_dict,
    )

    try:
        data = to_dict(named_config(config_name))
        if max_steps is not None:
            data["train"]["total_steps"] = max_steps
        if init_from is not None:
            data["train"]["init_from"] = str(init_from)
        config = from_dict(apply_overrides(data, assignments))
    except ConfigError as error:
        raise click.ClickException(str(error)) from None
    out = out if out is not None else Path(config.train.out_dir)
    main_process = int(os.environ.get("RANK", "0")) == 0
    if main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.toml").write_text(toml_text(to_dict(config)), encoding="utf-8")

    from ase_unimat.training.trainer import train  # torch takes seconds to import

    try:
        result = train(config, out_dir=out, resume=resume, progress=not quiet, overrides={"keep_every": keep_every})
    except (ValueError, CheckpointError, FileNotFoundError, OSError) as error:
        raise click.ClickException(str(error)) from None
    if main_process:
        loss = "n/a (nothing left to train)" if result.loss is None else f"{result.loss:.4f}"
        val = "n/a" if result.val_loss is None else f"{result.val_loss:.4f}"
        click.echo(
            f"step {result.step} (epoch {result.epoch}) in {result.wall_time:.0f} s: loss {loss}, "
            f"val loss {val}; checkpoint {result.checkpoint}, model {result.model}"
        )


if __name__ == "__main__":
    main()
