"""The options every ``unimat-*`` command spells the same way: ``-o/--out``, ``--quiet``, ``-h``, ``--formula-units``.

Old spellings stay as hidden aliases for one release (``--output``, ``--progress/--no-progress``,
``--calc``, ``--templates``, ``--strength``, ``--L``): they parse, but ``--help`` shows only the
new name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

#: ``-h`` and ``--help`` on every command.
CONTEXT = {"help_option_names": ["-h", "--help"]}


class AliasOption(click.Option):
    """A click option some of whose names parse but are left out of ``--help`` (deprecated spellings)."""

    def __init__(self, *args: Any, hidden_aliases: tuple[str, ...] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hidden_aliases = set(hidden_aliases)

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        return self._shown(super().get_help_record, ctx)

    def get_error_hint(self, ctx: click.Context) -> str:
        return self._shown(super().get_error_hint, ctx)

    def _shown(self, method: Callable, ctx: click.Context) -> Any:
        """``method(ctx)`` with the hidden aliases out of ``opts`` and ``secondary_opts``."""
        opts, secondary = self.opts, self.secondary_opts
        self.opts = [o for o in opts if o not in self.hidden_aliases]
        self.secondary_opts = [o for o in secondary if o not in self.hidden_aliases]
        try:
            return method(ctx)
        finally:
            self.opts, self.secondary_opts = opts, secondary


def option(*names: str, hidden: tuple[str, ...] = (), **kwargs: Any) -> Callable:
    """``click.option(*names)`` whose names in ``hidden`` parse but are not shown in ``--help``."""
    return click.option(*names, cls=AliasOption, hidden_aliases=hidden, **kwargs)


def out_option(**kwargs: Any) -> Callable:
    """``-o/--out`` (``--output`` parses too)."""
    return option("-o", "--out", "--output", "out", hidden=("--output",), **kwargs)


def quiet_option(help: str = "No progress bars or progress lines; print only the result.") -> Callable:
    """``--quiet`` (``--no-progress`` / ``--progress`` parse too); progress is shown by default."""
    return option("--quiet/--progress", "--no-progress", "quiet", hidden=("--progress", "--no-progress"),
                  default=False, help=help)  # fmt: skip


class FormulaUnits(click.ParamType):
    """``2`` or an inclusive range ``1-4`` (as ``(low, high)``)."""

    name = "N|LOW-HIGH"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[int, int]:
        from ase_unimat.core.formula import FormulaError, parse_formula_units  # --help stays instant

        if isinstance(value, tuple):
            return value
        try:
            return parse_formula_units(str(value))
        except FormulaError as err:
            self.fail(str(err), param, ctx)
