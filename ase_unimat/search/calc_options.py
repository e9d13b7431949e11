"""Calculator settings from the command line: ``--calc-opt KEY=VALUE`` and ``--calc-config FILE.toml``.

Each built-in calculator declares the options it takes (:data:`KNOWN_OPTIONS`), with a converter
from the text a user types; :func:`check_options` turns raw values (text from the command line,
numbers and tables from TOML or Python) into typed values and refuses an unknown key in one line
that lists the known ones. A ``module:factory`` or a calculator object takes any keywords (the
factory itself decides). The checked options are what a search writes into its manifest, so a
resumed run builds the same calculator, and a changed setting is refused by name.

The TOML file holds the options of the screening calculator at its top level (or in a
``[calculator]`` table, named as the ``--calculator`` option; ``[calc]`` is its short alias) and
those of the refining calculator in a ``[refine]`` table::

    [calculator]
    device = "auto"

    [refine]
    ecutwfc = 30
    kpts = [4, 4, 4]
    pseudo_dir = "/usr/share/espresso/pseudo"
    pseudopotentials = { Si = "Si.pz-vbc.UPF" }
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ase_unimat.core.messages import one_line


class CalcOptionError(ValueError):
    """An unknown calculator option or a value of the wrong kind (the message names the key)."""


def _number(value: Any) -> float:
    number = float(value)
    if not math.isfinite(number) or number <= 0:
        raise ValueError("must be a positive number")
    return number


def _count(value: Any) -> int:
    if isinstance(value, bool) or float(value) != int(float(value)) or int(float(value)) < 1:
        raise ValueError("must be a positive integer")
    return int(float(value))


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a non-empty text")
    return value.strip()


def _path(value: Any) -> str:
    if isinstance(value, Path):
        return str(value)
    return _text(value)


def _device(value: Any) -> str:
    text = _text(value).lower()
    if text not in ("auto", "cpu", "cuda") and not text.startswith("cuda:"):
        raise ValueError("must be auto, cpu, cuda or cuda:N")
    return text


def _kpts(value: Any) -> list[int]:
    """``4``, ``"4,4,2"``, ``"4x4x2"`` or ``[4, 4, 2]`` -> ``[4, 4, 2]``."""
    if isinstance(value, str):
        parts = value.lower().replace("x", ",").split(",")
    elif isinstance(value, Sequence):
        parts = list(value)
    else:
        parts = [value]
    grid = [_count(p) for p in parts]
    if len(grid) == 1:
        grid *= 3
    if len(grid) != 3:
        raise ValueError("must be one integer or three (e.g. 4x4x2)")
    return grid


def _smearing(value: Any) -> float | None:
    """Marzari-Vanderbilt width in Ry; ``none``/``0`` for fixed occupations."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "off", "fixed", "0")):
        return None
    width = float(value)
    if not math.isfinite(width) or width < 0:
        raise ValueError("must be a width in Ry >= 0, or none")
    return width or None


def _pseudopotentials(value: Any) -> dict[str, str]:
    """``{"Si": "Si.pz-vbc.UPF"}`` or ``"Si=Si.pz-vbc.UPF,C=C.pz-rrkjus.UPF"``."""
    if isinstance(value, str):
        pairs = [part.split("=", 1) for part in value.split(",") if part.strip()]
        if any(len(pair) != 2 for pair in pairs):
            raise ValueError("must be Element=FILE.UPF pairs separated by commas")
        value = {k.strip(): v.strip() for k, v in pairs}
    if not isinstance(value, Mapping) or not value:
        raise ValueError("must map elements to UPF file names")
    return {str(k): _text(v) for k, v in value.items()}


def _input_data(value: Any) -> dict[str, dict[str, Any]]:
    """Extra ``pw.x`` namelist entries, e.g. ``{"electrons": {"mixing_beta": 0.3}}`` (TOML or Python only)."""
    if not isinstance(value, Mapping) or not all(isinstance(v, Mapping) for v in value.values()):
        raise ValueError("must be a table of namelist tables (in a TOML file), e.g. [refine.input_data.electrons]")
    return {str(k): dict(v) for k, v in value.items()}


def _flag(value: Any) -> bool:
    """``true``/``false`` (also ``yes``/``no``, ``on``/``off``, ``1``/``0``) or a TOML/Python bool."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0"):
        return False
    raise ValueError("must be true or false")


def _threads(value: Any) -> int | None:
    if value is None or (isinstance(value, str) and value.strip().lower() == "none"):
        return None
    return _count(value)


_ML = {"device": _device, "threads": _threads}

#: Options of each built-in calculator: name -> {key: converter}.
KNOWN_OPTIONS: dict[str, dict[str, Callable[[Any], Any]]] = {
    "emt": {},
    "chgnet": {**_ML, "model": _text},
    "sevenn": {**_ML, "model": _text},
    "espresso": {
        "ecutwfc": _number,
        "ecutrho": _number,
        "kspacing": _number,
        "kpts": _kpts,
        "pseudo_dir": _path,
        "pseudopotentials": _pseudopotentials,
        "functional": _text,
        "smearing": _smearing,
        "directory": _path,
        "input_data": _input_data,
        "socket": _flag,  # true: one pw.x kept running through a relaxation (ASE's i-PI socket); default false
        "socket_timeout": _number,  # seconds one socket step may take before pw.x is killed
    },
}


def parse_assignments(pairs: Sequence[str]) -> dict[str, Any]:
    """``["ecutwfc=30", "pseudopotentials.Si=Si.pz-vbc.UPF"]`` -> ``{"ecutwfc": "30", "pseudopotentials": {...}}``.

    Values stay text (:func:`check_options` converts them); a dotted key fills a table.
    """
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise CalcOptionError(f"calculator option {pair!r} must look like KEY=VALUE")
        table, dot, sub = key.partition(".")
        if dot:
            if not isinstance(out.setdefault(table, {}), dict):
                raise CalcOptionError(f"calculator option {table!r} given both as a value and as a table")
            out[table][sub] = value.strip()
        else:
            out[key] = value.strip()
    return out


def read_config(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(screening options, refining options) of a TOML file (see the module docstring)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise CalcOptionError(f"cannot read calculator config {path}: {one_line(err, empty='')}") from None
    refine = data.pop("refine", {})
    if "calc" in data and "calculator" in data:
        raise CalcOptionError(f"{path}: give the screening options in [calculator] or in [calc], not both")
    calc = data.pop("calculator", data.pop("calc", {}))
    if not isinstance(refine, dict) or not isinstance(calc, dict):
        raise CalcOptionError(f"{path}: [calculator] and [refine] must be tables")
    return {**data, **calc}, dict(refine)


def check_options(spec: Any, options: Mapping[str, Any] | None, *, flag: str = "--calc-opt") -> dict[str, Any]:
    """Typed options of calculator ``spec``; unknown keys and bad values raise :class:`CalcOptionError`.

    Parameters
    ----------
    spec
        Calculator name, ``"module:factory"``, object or factory (only names are checked).
    options
        Raw option values (text or already typed).
    flag
        The option the user set them with, for the message.

    Returns
    -------
    dict
        The converted options.
    """
    options = dict(options or {})
    if not isinstance(spec, str) or ":" in spec or spec.strip().lower() not in KNOWN_OPTIONS:
        return options
    name = spec.strip().lower()
    known = KNOWN_OPTIONS[name]
    out: dict[str, Any] = {}
    for key, value in options.items():
        if key not in known:
            listed = ", ".join(sorted(known)) or "none"
            raise CalcOptionError(f"unknown {flag} {key!r} for calculator {name} (known: {listed})")
        try:
            out[key] = known[key](value)
        except (TypeError, ValueError) as err:
            raise CalcOptionError(f"{flag} {key}={value!r} for calculator {name}: {err}") from None
    if "kpts" in out and "kspacing" in out:
        raise CalcOptionError(f"{flag}: give kpts or kspacing for calculator {name}, not both")
    return out


def resolve_device(device: str) -> str:
    """``"auto"`` -> ``"cuda"`` when torch sees a GPU, else ``"cpu"``; anything else unchanged."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
