"""The one place calculators enter a search: :func:`get_calculator`.

A search passes a *spec* to its workers and each worker builds its own calculator, so nothing
heavy or unpicklable crosses a process boundary. A spec is one of

- a name: ``"emt"``, ``"chgnet"``, ``"sevenn"`` (if installed) or ``"espresso"`` (``pw.x``);
- ``"module:factory"``: ``factory(**kw)`` imported from ``module`` and called (the user's own);
- an ASE ``Calculator`` object (used as it is; it is pickled to process workers);
- a callable returning a calculator (called in the worker).

The relaxation code never looks at which calculator it holds; it only asks for energy, forces
and stress.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ase.calculators.emt import EMT
from ase.calculators.espresso import Espresso, EspressoProfile

#: Built-in calculator names.
CALCULATOR_NAMES = ("emt", "chgnet", "sevenn", "espresso")

#: Where Debian's ``quantum-espresso-data`` installs its example pseudopotentials.
DEBIAN_PSEUDO_DIR = Path("/usr/share/espresso/pseudo")

#: Pseudopotential file stems that are ultrasoft or PAW (they need ecutrho well above 4 x ecutwfc).
_AUGMENTED_TAGS = ("rrkjus", "van", "kjpaw", "paw", "_us", "uspp")


class CalculatorError(ValueError):
    """An unknown, unavailable or misconfigured calculator."""


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
        factory = _import_factory(name)
        try:
            calc = factory(**kw)
        except Exception as err:  # the user's code: its error in one line, naming the factory
            raise CalculatorError(f"calculator factory {name} raised {type(err).__name__}: {_one_line(err)}") from None
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
    from ase_unimat.search.calc_options import check_options

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
        _check_factory_options(name, _import_factory(name), dict(options or {}))
        return
    key = name.lower()
    if key not in CALCULATOR_NAMES:
        raise CalculatorError(
            f"unknown calculator {name!r}; use one of {', '.join(CALCULATOR_NAMES)} or 'module:factory'"
        )
    from ase_unimat.search.calc_options import check_options

    options = check_options(key, options)
    if key == "chgnet":
        _require_module("chgnet", "pip install chgnet")
    elif key == "sevenn":
        _require_module("sevenn", "pip install sevenn")
    elif key == "espresso":
        _pw_command()
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


def _import_factory(spec: str) -> Callable[..., Any]:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise CalculatorError(f"calculator spec {spec!r} must look like 'package.module:factory'")
    try:
        module = _import_module(module_name)
    except Exception as err:  # ImportError, or the module's own SyntaxError / exception at import
        raise CalculatorError(
            f"cannot import calculator module {module_name!r}: {type(err).__name__}: {_one_line(err)}"
        ) from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise CalculatorError(f"module {module_name!r} has no callable {attr!r}")
    return factory


def _check_factory_options(name: str, factory: Callable[..., Any], options: dict[str, Any]) -> None:
    """Refuse options the user's factory does not take (before anything runs)."""
    import inspect

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
    import sys

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


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text[:300] if text else "(no message)"


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

    from ase_unimat.search.calc_options import resolve_device

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

    from ase_unimat.search.calc_options import resolve_device

    device = resolve_device(device)
    if threads is not None:
        torch.set_num_threads(int(threads))
    return SevenNetCalculator(model=model, device=device, **kw)


def _pw_command() -> str:
    command = os.environ.get("UNIMAT_PW_COMMAND", "pw.x")
    if shutil.which(command.split()[0]) is None:
        raise CalculatorError(
            f"Quantum ESPRESSO's {command.split()[0]!r} is not on PATH "
            "(Debian: apt-get install quantum-espresso quantum-espresso-data)"
        )
    return command


def find_pseudopotentials(
    symbols: list[str] | tuple[str, ...], *, pseudo_dir: Path | str | None = None, functional: str = "pz"
) -> dict[str, str]:
    """Element -> UPF file name in ``pseudo_dir`` for one exchange-correlation ``functional``.

    The rule: files named ``<El>.<functional>-*.UPF`` (case-insensitive suffix), preferring
    non-relativistic and norm-conserving ones, then the alphabetically first. All elements must use
    the same functional, so a missing element is an error, never a silent mix.

    Parameters
    ----------
    symbols
        Elements needed.
    pseudo_dir
        Folder of UPF files (default ``$ESPRESSO_PSEUDO`` or Debian's ``/usr/share/espresso/pseudo``).
    functional
        Functional tag in the file names: ``"pz"`` (LDA) or ``"pbe"``, ``"pbesol"``.
    """
    folder = Path(pseudo_dir or os.environ.get("ESPRESSO_PSEUDO", DEBIAN_PSEUDO_DIR))
    if not folder.is_dir():
        raise CalculatorError(
            f"pseudopotential folder {folder} not found (Debian: apt-get install quantum-espresso-data)"
        )
    files = sorted(p.name for p in folder.iterdir() if p.suffix.lower() == ".upf")
    chosen: dict[str, str] = {}
    for symbol in dict.fromkeys(symbols):
        prefix = f"{symbol}.{functional}-".lower()
        candidates = [f for f in files if f.lower().startswith(prefix)]
        if not candidates:
            raise CalculatorError(
                f"no {functional} pseudopotential for {symbol} in {folder} "
                f"(available: {', '.join(sorted({f.split('.')[0].split('_')[0] for f in files}))})"
            )
        chosen[symbol] = min(candidates, key=lambda f: (_is_augmented(f), ".rel-" in f, f))
    return chosen


def _is_augmented(filename: str) -> bool:
    return any(tag in filename.lower() for tag in _AUGMENTED_TAGS)


class EspressoForSearch:
    """Build an ASE ``Espresso`` calculator per structure, since pseudopotentials depend on its elements.

    It is an ASE calculator itself (it delegates to the inner ``Espresso`` created on the first
    call for a given set of elements), so the relaxation code treats it like any other.
    """

    implemented_properties = ("energy", "free_energy", "forces", "stress")

    def __init__(
        self,
        *,
        pseudo_dir: Path | str | None = None,
        functional: str = "pz",
        pseudopotentials: Mapping[str, str] | None = None,
        ecutwfc: float = 30.0,
        ecutrho: float | None = None,
        kspacing: float = 0.25,
        kpts: tuple[int, int, int] | list[int] | None = None,
        smearing: float | None = 0.01,
        directory: Path | str | None = None,
        input_data: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self.command = _pw_command()
        self.pseudo_dir = Path(pseudo_dir or os.environ.get("ESPRESSO_PSEUDO", DEBIAN_PSEUDO_DIR))
        self.functional = functional
        self.pseudopotentials = dict(pseudopotentials or {})
        self.ecutwfc = float(ecutwfc)
        self.ecutrho = ecutrho
        self.kspacing = float(kspacing)
        self.kpts = None if kpts is None else tuple(int(k) for k in kpts)
        self.smearing = smearing
        self.directory = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="unimat-pw-"))
        self.input_data = {k: dict(v) for k, v in (input_data or {}).items()}
        self._inner: Any = None
        self._inner_symbols: tuple[str, ...] = ()

    def _calculator_for(self, atoms: Any) -> Any:
        symbols = tuple(sorted(set(atoms.get_chemical_symbols())))
        if self._inner is not None and symbols == self._inner_symbols:
            return self._inner
        missing = [s for s in symbols if s not in self.pseudopotentials]
        pseudos = find_pseudopotentials(missing, pseudo_dir=self.pseudo_dir, functional=self.functional)
        pseudos.update({s: self.pseudopotentials[s] for s in symbols if s in self.pseudopotentials})
        for symbol, name in pseudos.items():
            if not (self.pseudo_dir / name).is_file():
                raise CalculatorError(f"pseudopotential {name} for {symbol} not found in {self.pseudo_dir}")
        augmented = any(_is_augmented(name) for name in pseudos.values())
        ecutrho = self.ecutrho or self.ecutwfc * (8.0 if augmented else 4.0)
        system: dict[str, Any] = {"ecutwfc": self.ecutwfc, "ecutrho": ecutrho}
        if self.smearing:
            system.update(occupations="smearing", smearing="mv", degauss=self.smearing)
        input_data: dict[str, dict[str, Any]] = {
            "control": {"calculation": "scf", "tprnfor": True, "tstress": True, "disk_io": "none"},
            "system": system,
            "electrons": {"conv_thr": 1e-8 * len(atoms), "mixing_beta": 0.5},
        }
        for section, values in self.input_data.items():
            input_data.setdefault(section, {}).update(values)
        profile = EspressoProfile(command=self.command, pseudo_dir=self.pseudo_dir)
        self._inner = Espresso(
            profile=profile,
            pseudopotentials=pseudos,
            input_data=input_data,
            **({"kpts": self.kpts} if self.kpts else {"kspacing": self.kspacing}),
            directory=self.directory,
        )
        self._inner_symbols = symbols
        return self._inner

    # The ASE calculator interface: delegate to the inner Espresso calculator.
    def calculate(self, atoms: Any = None, properties: Any = ("energy",), system_changes: Any = None) -> None:
        self._calculator_for(atoms).calculate(atoms, properties, system_changes)

    def get_property(self, name: str, atoms: Any = None, allow_calculation: bool = True) -> Any:
        return self._calculator_for(atoms).get_property(name, atoms, allow_calculation)

    def get_potential_energy(self, atoms: Any = None, force_consistent: bool = False) -> float:
        return self.get_property("free_energy" if force_consistent else "energy", atoms)

    def get_forces(self, atoms: Any = None) -> Any:
        return self.get_property("forces", atoms)

    def get_stress(self, atoms: Any = None) -> Any:
        return self.get_property("stress", atoms)

    @property
    def results(self) -> dict[str, Any]:
        return {} if self._inner is None else self._inner.results


def _espresso(**kw: Any) -> EspressoForSearch:
    """Quantum ESPRESSO ``pw.x`` through ASE (options: see :class:`EspressoForSearch`)."""
    return EspressoForSearch(**kw)
