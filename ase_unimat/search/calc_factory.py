"""The user's own calculators: a ``"module:factory"`` spec imported (also from the current directory) and checked.

:func:`import_factory` finds the callable, from an installed module or from ``mymodule.py`` /
``mypackage/`` in the current directory; :func:`check_factory_options` refuses options the factory
does not take before anything runs. Their errors are :class:`~ase_unimat.search.calc_errors.CalculatorError`
with the user's error quoted on one line.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ase_unimat.core.messages import one_line
from ase_unimat.search.calc_errors import CalculatorError


def import_factory(spec: str) -> Callable[..., Any]:
    """The callable named by ``"package.module:factory"``."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise CalculatorError(f"calculator spec {spec!r} must look like 'package.module:factory'")
    try:
        module = _import_module(module_name)
    except Exception as err:  # ImportError, or the module's own SyntaxError / exception at import
        raise CalculatorError(
            f"cannot import calculator module {module_name!r}: {type(err).__name__}: "
            f"{one_line(err, limit=300, empty='(no message)')}"
        ) from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise CalculatorError(f"module {module_name!r} has no callable {attr!r}")
    return factory


def check_factory_options(name: str, factory: Callable[..., Any], options: dict[str, Any]) -> None:
    """Refuse options the user's factory does not take (before anything runs)."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # a builtin or C callable: nothing to check
        return
    try:
        signature.bind(**options)
    except TypeError as err:
        takes = ", ".join(p for p in signature.parameters if p not in ("args", "kwargs")) or "none"
        raise CalculatorError(
            f"calculator factory {name} does not take these options ({err}; it takes: {takes})"
        ) from None


def _import_module(module_name: str) -> Any:
    """Import ``module_name``, also from the current directory (``mymodule.py`` or ``mypackage/``).

    The current directory is tried only when the normal import finds no such top-level module;
    the module is then loaded from its file and registered under its name (``sys.path`` untouched).
    """
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        top = module_name.split(".")[0]
        if err.name != top:
            raise
    if top in sys.modules:
        return importlib.import_module(module_name)
    here = Path.cwd()
    location = here / top / "__init__.py" if (here / top / "__init__.py").is_file() else here / f"{top}.py"
    if not location.is_file():
        raise ModuleNotFoundError(f"no module named {top!r} (not installed, and no {top}.py in {here})")
    search = [str(location.parent)] if location.name == "__init__.py" else None
    spec = importlib.util.spec_from_file_location(top, location, submodule_search_locations=search)
    module = importlib.util.module_from_spec(spec)
    sys.modules[top] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[top]
        raise
    return importlib.import_module(module_name)
