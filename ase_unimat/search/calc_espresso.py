"""Quantum ESPRESSO (``pw.x``) in a search: the pseudopotential rule and a calculator built per set of elements.

:func:`find_pseudopotentials` picks one UPF file per element for one functional (a missing element
is an error, never a silent mix); :class:`EspressoForSearch` is an ASE calculator that builds the
inner ``Espresso`` for the elements of the structure it is given (cut-offs raised for ultrasoft or
PAW files) and, in a relaxation, keeps one pw.x running over ASE's socket (``socket=True``, see
:mod:`~ase_unimat.search.calc_espresso_socket`). :func:`pw_command` finds ``pw.x`` (``$UNIMAT_PW_COMMAND``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from ase.calculators.espresso import Espresso, EspressoProfile

from ase_unimat.search.calc_errors import CalculatorError
from ase_unimat.search.calc_espresso_socket import DEFAULT_TIMEOUT_S, PwServer

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

    With ``socket=True``, the calculations inside :meth:`relaxation` (which
    :func:`~ase_unimat.search.relax.relax` enters) reuse one running pw.x over ASE's i-PI socket
    (:class:`~ase_unimat.search.calc_espresso_socket.PwServer`): a fresh pw.x per structure, and
    again when the cell has strained more than ``MAX_STRAIN`` from where that pw.x started or needs
    another k-point grid; it is stopped when the relaxation ends, fails or times out. Outside a
    relaxation, and with ``socket=False`` (the default), each calculation runs its own pw.x (ASE's
    file I/O). ``socket_timeout`` is the seconds one socket step may take before pw.x is killed.

    ``socket`` is off by default because it measured no faster at production settings
    (``bench/bench_espresso_socket.py``: random Si2 and AlAs at 25 Ry, kspacing 0.06: 1.03x and 0.95x
    CPU per evaluation): pw.x 6.7 in driver mode spends as many SCF iterations per variable-cell
    step as a fresh start (it has no wavefunction or charge extrapolation for a moving cell, and its
    first diagonalization keeps the last step's tight threshold), so only the start-up is saved,
    about 10 % of a step there; at cheap settings (18 Ry, kspacing 0.1) it is 1.3x CPU, 1.6x wall.
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
        socket: bool = False,
        socket_timeout: float = DEFAULT_TIMEOUT_S,
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
        self.socket = bool(socket)
        self.socket_timeout = float(socket_timeout)
        self._inner: Any = None
        self._inner_symbols: tuple[str, ...] = ()
        self._inner_settings: dict[str, Any] = {}
        self._relaxing = False
        self._server: PwServer | None = None
        self._atoms: Any = None  # the structure of the socket results
        self._results: dict[str, Any] = {}
        self.socket_starts = 0  # pw.x servers started (a fresh one per structure, and when the cell strained far)

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
        self._inner_settings = {
            "pseudopotentials": pseudos,
            "input_data": input_data,
            **({"kpts": self.kpts} if self.kpts else {"kspacing": self.kspacing}),
        }
        self._inner = self._espresso(self.directory, calculation="scf")
        self._inner_symbols = symbols
        return self._inner

    def _espresso(self, directory: Path, *, calculation: str) -> Any:
        """An ASE ``Espresso`` of the current elements' settings, writing into ``directory``."""
        settings = dict(self._inner_settings)
        input_data = {k: dict(v) for k, v in settings.pop("input_data").items()}
        input_data["control"]["calculation"] = calculation
        profile = EspressoProfile(command=self.command, pseudo_dir=self.pseudo_dir)
        return Espresso(profile=profile, input_data=input_data, directory=directory, **settings)

    # -- one pw.x per relaxation (socket=True) ---------------------------------------------------
    @contextlib.contextmanager
    def relaxation(self) -> Iterator[None]:
        """The calculations inside reuse one pw.x per structure (``socket=True``); it is stopped on exit."""
        if self._relaxing:  # nested: the outer relaxation owns the server
            yield
            return
        self._relaxing = True
        try:
            yield
        finally:
            self._relaxing = False
            self._stop_server()

    def _socket_calculate(self, atoms: Any) -> None:
        self._calculator_for(atoms)  # the elements' settings (pseudopotentials checked)
        if self._server is None or not self._server.fits(atoms):
            self._stop_server()
            folder = self.directory / f"socket-{os.getpid()}"
            folder.mkdir(parents=True, exist_ok=True)
            espresso = self._espresso(folder, calculation="vc-relax")  # vc-: pw.x sizes its tables for a moving cell
            self._server = PwServer(espresso, atoms, command=self.command.split(), timeout=self.socket_timeout,
                                    kspacing=None if self.kpts else self.kspacing)  # fmt: skip
            self.socket_starts += 1
        self._atoms, self._results = None, {}
        try:
            self._results = self._server.calculate(atoms)
        except BaseException:  # a failed step (or a timeout alarm): this pw.x is done
            self._stop_server()
            raise
        self._atoms = atoms.copy()

    def _stop_server(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()

    def _socket_active(self) -> bool:
        return self.socket and self._relaxing

    # The ASE calculator interface: delegate to the inner Espresso calculator (or the socket server).
    def calculate(self, atoms: Any = None, properties: Any = ("energy",), system_changes: Any = None) -> None:
        if self._socket_active():
            self._socket_calculate(atoms)
            return
        self._calculator_for(atoms).calculate(atoms, properties, system_changes)

    def get_property(self, name: str, atoms: Any = None, allow_calculation: bool = True) -> Any:
        if not self._socket_active():
            return self._calculator_for(atoms).get_property(name, atoms, allow_calculation)
        if atoms is None:
            atoms = self._atoms
        if atoms is None or not _same_structure(atoms, self._atoms):
            if not allow_calculation:
                return None
            self._socket_calculate(atoms)
        if name not in self._results:
            raise CalculatorError(f"pw.x socket gave no {name}")
        value = self._results[name]
        return value.copy() if hasattr(value, "copy") else value

    def get_potential_energy(self, atoms: Any = None, force_consistent: bool = False) -> float:
        return self.get_property("free_energy" if force_consistent else "energy", atoms)

    def get_forces(self, atoms: Any = None) -> Any:
        return self.get_property("forces", atoms)

    def get_stress(self, atoms: Any = None) -> Any:
        return self.get_property("stress", atoms)

    @property
    def results(self) -> dict[str, Any]:
        if self._socket_active():
            return self._results
        return {} if self._inner is None else self._inner.results


def _same_structure(atoms: Any, other: Any) -> bool:
    """The socket results of ``other`` hold for ``atoms`` (same numbers, cell, positions, pbc)."""
    return (
        other is not None
        and len(atoms) == len(other)
        and (atoms.numbers == other.numbers).all()
        and (atoms.pbc == other.pbc).all()
        and np.array_equal(atoms.cell.array, other.cell.array)
        and np.array_equal(atoms.positions, other.positions)
    )
