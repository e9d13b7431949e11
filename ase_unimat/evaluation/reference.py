"""Reference data for stability: the Materials Project structures of ``../shared/data`` as records.

``load_reference_records`` reads mp_20 and the extra MP sets (CSV and the lemat tarball) into
:class:`ReferenceRecord` s; :data:`HULL_SOURCES` are the competing phases of a hull (never val or
test), :data:`TRAINING_SOURCES` everything a model may have been trained on (novelty).
"""


from __future__ import annotations

import functools
import math
import os
import re
import tarfile
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ase import Atoms

#: Where each data source lives under ``../shared/data``.
DATA_SOURCES = {
    "mp_20/train": "mp_20/train.csv.gz",
    "mp_20/val": "mp_20/val.csv.gz",
    "mp_20/test": "mp_20/test.csv.gz",
    "chemeleon_mp40/test": "extra_mp/chemeleon_mp40/test.csv.gz",
    "chemeleon_mp40/random_split_test": "extra_mp/chemeleon_mp40/random_split_test.csv.gz",
    "chemeleon_mp40/mineral_test": "extra_mp/chemeleon_mp40/mineral_test.csv.gz",
    "lemat_mp": "extra_mp/lemat_mp_random_sample/baseline_data_mp.tar.gz",
}
EXTRA_MP = ("chemeleon_mp40/test", "chemeleon_mp40/random_split_test", "chemeleon_mp40/mineral_test", "lemat_mp")
#: Competing phases for hulls: mp_20 train plus the extra MP structures (never val or test).
HULL_SOURCES = ("mp_20/train", *EXTRA_MP)
#: Everything a model may have been trained on (novelty, held-out formulas).
TRAINING_SOURCES = ("mp_20/train", "mp_20/val", *EXTRA_MP)

_FORMULA_SUM = re.compile(r"_chemical_formula_sum\s+'?([^'\n]+)'?")
_COUNT = re.compile(r"([A-Z][a-z]?)(\d*\.?\d*)")


def default_data_dir() -> Path:
    """``$UNIMAT_SHARED_DATA``, else the first ``shared/data`` found beside the repository checkout
    (source tree) or beside/inside the working directory (installed package run from a checkout)."""
    env = os.environ.get("UNIMAT_SHARED_DATA")
    if env:
        return Path(env)
    candidates = [
        Path(__file__).resolve().parents[3] / "shared" / "data",
        Path.cwd().parent / "shared" / "data",
        Path.cwd() / "shared" / "data",
    ]
    return next((path for path in candidates if path.is_dir()), candidates[0])


# ------------------------------------------------------------------------------------ reference data


@dataclass(frozen=True)
class ReferenceRecord:
    """One known structure from the data: id, where it came from, its cell counts and CIF text."""

    material_id: str
    source: str
    counts: dict[str, int]  # cell composition
    e_above_hull: float  # DFT value recorded in the data (NaN when the source has none)
    cif: str

    @property
    def natoms(self) -> int:
        return int(sum(self.counts.values()))

    @property
    def elements(self) -> frozenset[str]:
        return frozenset(self.counts)

    @functools.cached_property
    def reduced_formula(self) -> str:
        from pymatgen.core import Composition  # pymatgen is slow to import

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pymatgen warns about missing electronegativities (He, Ne, ...)
            return Composition(self.counts).reduced_formula

    def atoms(self) -> Atoms:
        """The structure as ``ase.Atoms`` (parsed from the CIF)."""
        from pymatgen.core import Structure  # pymatgen is slow to import
        from pymatgen.io.ase import AseAtomsAdaptor  # pymatgen is slow to import

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            structure = Structure.from_str(self.cif, fmt="cif")
        return AseAtomsAdaptor.get_atoms(structure)


def _counts_from_cif(cif: str) -> dict[str, int]:
    match = _FORMULA_SUM.search(cif)
    if match is None:
        raise ValueError("CIF has no _chemical_formula_sum")
    counts: dict[str, int] = {}
    for symbol, number in _COUNT.findall(match.group(1)):
        counts[symbol] = counts.get(symbol, 0) + (round(float(number)) if number else 1)
    return counts


def load_reference_records(
    data_dir: Path | str | None = None, *, sources: Sequence[str] = HULL_SOURCES, max_atoms: int | None = 20
) -> list[ReferenceRecord]:
    """Known structures from the shared data, deduplicated by ``material_id`` (first source wins).

    Parameters
    ----------
    data_dir
        The shared data folder (default :func:`default_data_dir`).
    sources
        Keys of :data:`DATA_SOURCES`, in priority order.
    max_atoms
        Keep cells with at most this many atoms (``None``: all).
    """
    import pandas as pd  # pandas is slow to import

    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    unknown = [s for s in sources if s not in DATA_SOURCES]
    if unknown:
        raise ValueError(f"unknown data sources {unknown}; known: {', '.join(DATA_SOURCES)}")
    records: dict[str, ReferenceRecord] = {}
    for source in sources:
        path = data_dir / DATA_SOURCES[source]
        if not path.exists():
            raise FileNotFoundError(f"data file {path} not found (set UNIMAT_SHARED_DATA)")
        if source == "lemat_mp":
            rows = _lemat_rows(path)
        else:
            frame = pd.read_csv(path)
            hull_column = "e_above_hull" if "e_above_hull" in frame else "energy_above_hull"
            hull = frame[hull_column] if hull_column in frame else [math.nan] * len(frame)
            rows = zip(frame["material_id"], frame["cif"], hull, strict=True)
        for material_id, cif, e_hull in rows:
            if material_id in records:
                continue
            counts = _counts_from_cif(cif)
            if max_atoms is not None and sum(counts.values()) > max_atoms:
                continue
            records[material_id] = ReferenceRecord(str(material_id), source, counts, float(e_hull), cif)
    return list(records.values())


def _lemat_rows(path: Path) -> Iterable[tuple[str, str, float]]:
    with tarfile.open(path, "r:gz") as archive:
        for member in archive.getmembers():
            if not member.name.endswith(".cif"):
                continue
            cif = archive.extractfile(member).read().decode()  # type: ignore[union-attr]
            material_id = Path(member.name).stem.removeprefix("mp_")
            yield material_id, cif, math.nan


def competing_phases(
    records: Sequence[ReferenceRecord], elements: Iterable[str], *, per_formula: int | None = 1
) -> list[ReferenceRecord]:
    """Records whose elements lie within ``elements``, ``per_formula`` lowest-DFT-e_hull per formula."""
    chemsys = frozenset(elements)
    inside = [r for r in records if r.elements <= chemsys]
    if per_formula is None:
        return inside
    by_formula: dict[str, list[ReferenceRecord]] = {}
    for record in inside:
        by_formula.setdefault(record.reduced_formula, []).append(record)
    chosen = []
    for group in by_formula.values():
        group.sort(key=polymorph_rank)
        chosen.extend(group[:per_formula])
    return chosen


def polymorph_rank(record: ReferenceRecord) -> tuple[float, int, str]:
    """Sort key of polymorphs: recorded DFT ``e_above_hull`` (unknown last), then fewer atoms, then id."""
    e_hull = math.inf if math.isnan(record.e_above_hull) else record.e_above_hull
    return e_hull, record.natoms, record.material_id
