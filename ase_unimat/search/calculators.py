"""The one place calculators enter a search: :func:`get_calculator`.

A search passes a *spec* to its workers and each worker builds its own calculator, so nothing
heavy or unpicklable crosses a process boundary. A spec is one of

- a name: ``"emt"``, ``"chgnet"``, ``"sevenn"`` (if installed) or ``"espresso"`` (``pw.x``);
- ``"module:factory"``: ``factory(**kw)`` imported from ``module`` and called (the user's own);
- an ASE ``Calculator`` object (used as it is; it is pickled to process workers);
- a callable returning a calculator (called in the worker).

The relaxation code never looks at which calculator it holds; it only asks for energy, forces
and stress. This module is the entry (specs, the built-in names and their builders); the user's
factories are imported by :mod:`~ase_unimat.search.calc_factory`, Quantum ESPRESSO lives in
:mod:`~ase_unimat.search.calc_espresso` and the shared error in :mod:`~ase_unimat.search.calc_errors`
(re-exported here, as are ``find_pseudopotentials``, ``EspressoForSearch`` and ``DEBIAN_PSEUDO_DIR``).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ase.calculators.emt import EMT

from ase_unimat.core.messages import one_line
from ase_unimat.search.calc_errors import CalculatorError
from ase_unimat.search.calc_espresso import DEBIAN_PSEUDO_DIR, EspressoForSearch, find_pseudopotentials, pw_command
from ase_unimat.search.calc_factory import check_factory_options, import_factory
from ase_unimat.search.calc_options import check_options, resolve_device

__all__ = [
    "CALCULATOR_NAMES",
    "DEBIAN_PSEUDO_DIR",
    "CalculatorError",
    "EspressoForSearch",
    "check_calculator_spec",
    "describe_calculator",
    "find_pseudopotentials",
    "get_calculator",
]

#: Built-in calculator names.
CALCULATOR_NAMES = ("emt", "chgnet", "sevenn", "espresso")


def get_calculator(spec: Any, **kw: Any) -> Any:
    """An ASE calculator from a spec (see the module docstring).

    Parameters
    ----------
    spec
        Calculator name, ``"module:factory"``, an ASE calculator or a zero-argument factory.
    **kw
        Options of the named calculator (e.g. ``threads=1`` for ``chgnet``, ``ecutwfc=30`` for
        ``espresso``) or keyword arguments of the user's factory.

    Returns
    -------
    ase.calculators.calculator.BaseCalculator
        A fresh calculator (or ``spec`` itself when it already is one).
    """
    if _is_calculator(spec):
        if kw:
            raise CalculatorError("options cannot be given together with a calculator object")
        return spec
    if callable(spec):
        return _checked(spec(**kw), repr(spec))
    if not isinstance(spec, str) or not spec.strip():
        raise CalculatorError(f"calculator must be a name, 'module:factory' or an ASE calculator, got {spec!r}")
    name = spec.strip()
    if ":" in name:
        factory = import_factory(name)
        try:
            calc = factory(**kw)
        except Exception as err:  # the user's code: its error in one line, naming the factory
            raise CalculatorError(
                f"calculator factory {name} raised {type(err).__name__}: "
                f"{one_line(err, limit=300, empty='(no message)')}"
            ) from None
        return _checked(calc, name)
    builders: dict[str, Callable[..., Any]] = {
        "emt": _emt,
        "chgnet": _chgnet,
        "sevenn": _sevenn,
        "espresso": _espresso,
    }
    key = name.lower()
    if key not in builders:
        raise CalculatorError(
            f"unknown calculator {name!r}; use one of {', '.join(CALCULATOR_NAMES)} or 'module:factory'"
        )
    return builders[key](**check_options(key, kw))


def check_calculator_spec(spec: Any, *, symbols: Sequence[str] = (), options: Mapping[str, Any] | None = None) -> None:
    """Raise :class:`CalculatorError` now if ``spec`` can never work (cheap: builds nothing heavy).

    ``symbols`` (the elements of the search) and ``options`` let ``espresso`` check its
    pseudopotentials before any seed is relaxed.
    """
    if _is_calculator(spec) or callable(spec):
        return
    if not isinstance(spec, str) or not spec.strip():
        raise CalculatorError(f"calculator must be a name, 'module:factory' or an ASE calculator, got {spec!r}")
    name = spec.strip()
    if ":" in name:
        check_factory_options(name, import_factory(name), dict(options or {}))
        return
    key = name.lower()
    if key not in CALCULATOR_NAMES:
        raise CalculatorError(
            f"unknown calculator {name!r}; use one of {', '.join(CALCULATOR_NAMES)} or 'module:factory'"
        )
    options = check_options(key, options)
    if key == "emt":
        from ase.calculators.emt import parameters

        unknown = [s for s in symbols if s not in parameters]
        if unknown:
            raise CalculatorError(
                f"EMT has no parameters for {', '.join(unknown)} (it covers {' '.join(parameters)}); "
                "use chgnet or another calculator"
            )
    elif key == "chgnet":
        _require_module("chgnet", "pip install chgnet")
    elif key == "sevenn":
        _require_module("sevenn", "pip install sevenn")
    elif key == "espresso":
        pw_command()
        options = dict(options or {})
        given = dict(options.get("pseudopotentials") or {})
        missing = [s for s in symbols if s not in given]
        find_pseudopotentials(missing, pseudo_dir=options.get("pseudo_dir"), functional=options.get("functional", "pz"))


def describe_calculator(spec: Any) -> str:
    """A short stable text naming the calculator (stored in a run's manifest)."""
    if isinstance(spec, str):
        return spec.strip().lower() if ":" not in spec else spec.strip()
    if _is_calculator(spec):
        return f"object:{type(spec).__module__}.{type(spec).__qualname__}"
    return f"factory:{getattr(spec, '__module__', '?')}.{getattr(spec, '__qualname__', repr(spec))}"


def _is_calculator(obj: Any) -> bool:
    return hasattr(obj, "get_potential_energy") and hasattr(obj, "calculate")


def _checked(calc: Any, origin: str) -> Any:
    if not _is_calculator(calc):
        raise CalculatorError(f"calculator factory {origin} returned {type(calc).__name__}, not an ASE calculator")
    return calc


def _require_module(name: str, hint: str) -> None:
    if importlib.util.find_spec(name) is None:
        raise CalculatorError(f"calculator {name!r} is not installed ({hint})")


def _emt(**kw: Any) -> Any:
    return EMT(**kw)


def _chgnet(*, threads: int | None = 1, model: str = "0.3.0", device: str = "auto", **kw: Any) -> Any:
    """CHGNet from the weights inside its wheel (offline); ``model`` is its version, ``device`` auto/cpu/cuda.

    ``threads`` sets torch's intra-op threads for this process (default 1: one per worker; measured
    here, 2 torch threads on 2 busy cores made a CHGNet single point 100x slower, 2 s instead of
    19 ms). ``None`` leaves torch's setting alone.
    """
    _require_module("chgnet", "pip install chgnet")
    import torch  # torch takes seconds to import
    from chgnet.model import CHGNet  # optional: pip install '.[chgnet]'
    from chgnet.model.dynamics import CHGNetCalculator  # optional: pip install '.[chgnet]'

    if threads is not None:
        torch.set_num_threads(int(threads))
    device = resolve_device(device)
    loaded = CHGNet.load(model_name=model, use_device=device, verbose=False)
    return CHGNetCalculator(model=loaded, use_device=device, **kw)


def _sevenn(*, threads: int | None = 1, model: str = "7net-0", device: str = "auto", **kw: Any) -> Any:
    """SevenNet (weights ship in its wheel); only when the ``sevenn`` package is installed."""
    _require_module("sevenn", "pip install sevenn")
    import torch  # torch takes seconds to import
    from sevenn.calculator import SevenNetCalculator  # optional: SevenNet

    device = resolve_device(device)
    if threads is not None:
        torch.set_num_threads(int(threads))
    return SevenNetCalculator(model=model, device=device, **kw)


def _espresso(**kw: Any) -> EspressoForSearch:
    """Quantum ESPRESSO ``pw.x`` through ASE (options: see :class:`EspressoForSearch`)."""
    return EspressoForSearch(**kw)
