"""Click parameter types the benchmarks' command lines share: ``KEY=VALUE`` pairs and comma lists."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import click


class KeyValue(click.ParamType):
    """``KEY=VALUE`` with KEY from a fixed set; VALUE a number, numbers separated by commas, or text."""

    name = "key=value"

    def __init__(self, keys: Sequence[str]) -> None:
        self.keys = tuple(keys)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[str, Any]:
        if isinstance(value, tuple):
            return value
        key, sep, text = str(value).partition("=")
        if not sep or key.strip() not in self.keys or not text.strip():
            self.fail(f"{value!r}: expected KEY=VALUE with KEY one of {', '.join(self.keys)}", param, ctx)
        parts = [part.strip() for part in text.split(",")]
        try:
            numbers = [float(part) for part in parts]
        except ValueError:
            return key.strip(), text.strip()
        numbers = [int(x) if x.is_integer() and "." not in part else x for x, part in zip(numbers, parts, strict=True)]
        return key.strip(), numbers[0] if len(numbers) == 1 else tuple(numbers)


class CommaList(click.ParamType):
    """A comma-separated list of names from a fixed set (duplicates dropped, order kept)."""

    name = "list"

    def __init__(self, choices: Sequence[str]) -> None:
        self.choices = tuple(choices)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[str, ...]:
        if isinstance(value, tuple):
            return value
        names = tuple(dict.fromkeys(part.strip() for part in str(value).split(",") if part.strip()))
        unknown = [name for name in names if name not in self.choices]
        if unknown or not names:
            self.fail(f"{value!r}: choose one or more of {', '.join(self.choices)}, comma-separated", param, ctx)
        return names


def key_value_option(name: str, keys: Sequence[str], what: str) -> Callable:
    """A repeatable ``name KEY=VALUE`` option (:class:`KeyValue` of ``keys``); its help is ``what``, then the keys.

    The parameter is ``name`` without the dashes, ``-`` as ``_`` (``--unimat-option``: ``unimat_option``).
    """
    return click.option(name, name.lstrip("-").replace("-", "_"), type=KeyValue(keys), multiple=True,
                        help=f"{what}; keys: {', '.join(keys)}.")  # fmt: skip
