"""Quantum ESPRESSO (``pw.x``) in a search: the pseudopotential rule and a calculator built per set of elements.

:func:`find_pseudopotentials` picks one UPF file per element for one functional (a missing element
is an error, never a silent mix); :class:`EspressoForSearch` is an ASE calculator that builds the
inner ``Espresso`` for the elements of the structure it is given (cut-offs raised for ultrasoft or
PAW files). :func:`pw_command` finds ``pw.x`` (``$UNIMAT_PW_COMMAND``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ase.calculators.espresso import Espresso, EspressoProfile

from ase_unimat.search.calc_errors import CalculatorError

#: Where Debian's ``quantum-espresso-data`` installs its example pseudopotentials.
DEBIAN_PSEUDO_DIR = Path("/usr/share/espresso/pseudo")

#: Pseudopotential file stems that are ultrasoft or PAW (they need ecutrho well above 4 x ecutwfc).
_AUGMENTED_TAGS = ("rrkjus", "van", "kjpaw", "paw", "_us", "uspp")


def pw_command() -> str:
    """The ``pw.x`` command (``$UNIMAT_PW_COMMAND``, default ``pw.x``); CalculatorError when it is not on PATH."""
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
        self.command = pw_command()
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
