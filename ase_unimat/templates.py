"""Prototype substitution: known structures with the target's stoichiometry, elements swapped in.

Reference set: a UniMat HDF5 dataset (``ase_unimat.dataset`` layout, read with plain h5py: the
sparse ``atoms/z`` + ``atoms/frac`` views when present, else the dense ``coords``), a folder of
CIFs, or Atoms in memory. :class:`TemplateIndex` groups it once by ``(anonymized formula, natoms)``;
a lookup is a dict access, and the structures of a group are built on the group's first use.

Rules, for a target composition (counts of one cell):

- **Templates**: every reference structure with the target's anonymized formula and the same number
  of atoms; then, ranked after them, structures with ``natoms / m`` atoms (``m`` = 2, 3, ...),
  repeated ``m`` times along their shortest lattice vector.
- **Element mapping**: order the elements of template and target alike, by (count, Pauling
  electronegativity, Z), and map them in that order. Elements with equal counts are
  interchangeable: every permutation within such a tie group is a candidate (up to 4! per group).
- **Prior** (lower is better): the chemical distance of the substitution,
  ``sum over mapped pairs of |chi_a - chi_b| / 0.5 + |r_a - r_b| / 0.2 A`` (Pauling electronegativity,
  ASE covalent radius). Candidates are ordered by (supercell factor, prior, reference row).
- **Volume**: the template cell is scaled isotropically so that its volume changes by the ratio of
  summed covalent-sphere volumes of target and template atoms (:mod:`ase_unimat.search.volume`).
- **Duplicates**: two candidates are the same when their neighbour fingerprints agree within 0.05
  (for every atom, the 4 shortest distances to atoms of each target element, in units of
  ``(V/N)^(1/3)``; atoms grouped by element and sorted); only the best-ranked one is kept and
  counts the others in ``n_duplicates``. A supercell candidate can match a template of full size.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers, chemical_symbols, covalent_radii

from ase_unimat.formula import anonymized_formula
from ase_unimat.search.seeds import NoSeedsForFormula, formula_label
from ase_unimat.search.volume import sphere_volume

CHI_SCALE = 0.5
RADIUS_SCALE = 0.2
FINGERPRINT_NEIGHBOURS = 4
FINGERPRINT_RADIUS = 3.5
FINGERPRINT_TOL = 0.05
MAX_TIE_PERMUTED = 4


class NoTemplateError(NoSeedsForFormula):
    """No reference structure has the target's stoichiometry and size."""


@dataclass(frozen=True)
class TemplateCandidate:
    """One substituted template: a starting structure and where it came from."""

    atoms: Atoms  # target elements, rescaled volume
    material_id: str  # the template's id in the reference set
    template_formula: str
    mapping: dict[str, str]  # template element -> target element
    prior: float  # chemical distance of the substitution (lower is better)
    supercell: int  # 1, or m when the template was repeated m times
    n_duplicates: int = 0  # lower-ranked candidates that were the same structure


@dataclass
class _Group:
    """The structures of one (anonymized formula, natoms) key, built on first use."""

    rows: list[int]
    atoms: list[Atoms] = field(default_factory=list)
    fingerprints: list[dict[int, np.ndarray]] = field(default_factory=list)  # Z -> (n_atoms, k) per structure


class TemplateIndex:
    """Reference structures indexed by anonymized formula and number of atoms.

    Build with :meth:`from_hdf5`, :meth:`from_cif_dir`, :meth:`from_atoms` or :meth:`load`.
    """

    def __init__(self, numbers: Sequence[np.ndarray], cells: Sequence[np.ndarray], fracs: Sequence[np.ndarray],
                 material_ids: Sequence[str], *, source: str = "<memory>") -> None:
        if not len(numbers) == len(cells) == len(fracs) == len(material_ids):
            raise ValueError("numbers, cells, fracs and material_ids must have the same length")
        self.source = source
        self._numbers = [np.asarray(z, dtype=np.int64) for z in numbers]
        self._cells = [np.asarray(c, dtype=np.float64) for c in cells]
        self._fracs = [np.asarray(f, dtype=np.float64) for f in fracs]
        self.material_ids = [str(m) for m in material_ids]
        self._keys: dict[tuple[str, int], _Group] = {}
        self._counts: list[dict[str, int]] = []
        for row, z in enumerate(self._numbers):
            uniq, n = np.unique(z, return_counts=True)
            counts = {chemical_symbols[int(u)]: int(c) for u, c in zip(uniq, n, strict=True)}
            self._counts.append(counts)
            key = (anonymized_formula(counts), int(len(z)))
            self._keys.setdefault(key, _Group([])).rows.append(row)
        self._element_table: dict[str, tuple[float, float]] = {}

    def __len__(self) -> int:
        return len(self._numbers)

    # ------------------------------------------------------------------------------- construction
    @classmethod
    def from_atoms(cls, structures: Sequence[Atoms], material_ids: Sequence[str] | None = None) -> TemplateIndex:
        """Index Atoms in memory (ids default to ``info["material_id"]`` or the position)."""
        ids = material_ids or [str(a.info.get("material_id", i)) for i, a in enumerate(structures)]
        return cls([a.numbers for a in structures], [a.cell[:] for a in structures],
                   [a.get_scaled_positions() for a in structures], ids)

    @classmethod
    def from_hdf5(cls, path: str | Path) -> TemplateIndex:
        """Index a UniMat HDF5 dataset file."""
        import h5py

        from ase_unimat.representation import decode, lattice_to_cell

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no template reference file {path}")
        with h5py.File(path, "r") as h5:
            ids = [s.decode() if isinstance(s, bytes) else str(s) for s in h5["material_id"][:]]
            lattice = h5["lattice"][:].astype(np.float64)  # (N, 6)
            if "atoms" in h5 and "z" in h5["atoms"]:
                natoms = h5["natoms"][:].astype(np.int64)
                z_all = h5["atoms/z"][:].astype(np.int64)
                frac_all = h5["atoms/frac"][:].astype(np.float64)
                splits = np.cumsum(natoms)[:-1]
                numbers, fracs = np.split(z_all, splits), np.split(frac_all, splits)
            else:
                numbers, fracs = [], []
                for coords, lat in zip(h5["coords"], lattice, strict=True):
                    atoms = decode(coords, lat)
                    numbers.append(atoms.numbers)
                    fracs.append(atoms.get_scaled_positions())
        cells = [lattice_to_cell(lat) for lat in lattice]
        return cls(numbers, cells, fracs, ids, source=str(path))

    @classmethod
    def from_cif_dir(cls, path: str | Path) -> TemplateIndex:
        """Index every ``*.cif`` of a folder (id = file stem)."""
        from ase.io import read

        files = sorted(Path(path).glob("*.cif"))
        if not files:
            raise FileNotFoundError(f"no .cif files in template reference folder {path}")
        structures = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for f in files:
                structures.append(read(f))
        return cls.from_atoms(structures, [f.stem for f in files])

    @classmethod
    def load(cls, reference: str | Path | TemplateIndex | None = None) -> TemplateIndex:
        """An index of ``reference``: a built index, an HDF5 file, a CIF folder, or None (the default)."""
        if isinstance(reference, TemplateIndex):
            return reference
        path = default_reference() if reference is None else Path(reference)
        if path.is_dir():
            return cls.from_cif_dir(path)
        return cls.from_hdf5(path)

    # ------------------------------------------------------------------------------- lookup
    def rows(self, counts: Mapping[str, int], *, supercell: int = 1) -> list[int]:
        """Reference rows with the stoichiometry of ``counts`` and ``natoms / supercell`` atoms."""
        natoms = sum(int(n) for n in counts.values())
        if natoms % supercell:
            return []
        group = self._keys.get((anonymized_formula(counts), natoms // supercell))
        return list(group.rows) if group else []

    def candidates(self, counts: Mapping[str, int], *, exclude_ids: Iterable[str] = (),
                   max_supercell: int = 4) -> list[TemplateCandidate]:
        """Substituted, rescaled, deduplicated templates for ``counts``, best first.

        Raises
        ------
        NoTemplateError
            When no reference structure has this stoichiometry and a fitting number of atoms.
        """
        counts = {s: int(n) for s, n in counts.items()}
        excluded = set(exclude_ids)
        natoms = sum(counts.values())
        target_roles = self._role_order(counts)
        scored = []
        for m in range(1, max_supercell + 1):
            if natoms % m:
                continue
            group = self._keys.get((anonymized_formula(counts), natoms // m))
            if group is None:
                continue
            self._build(group)
            for i, row in enumerate(group.rows):
                if self.material_ids[row] in excluded:
                    continue
                for mapping, prior in self._mappings(self._counts[row], target_roles, counts):
                    scored.append((m, prior, row, i, group, mapping))
        if not scored:
            raise NoTemplateError(
                f"no template for {formula_label(counts)}: no structure in "
                f"{self.source} ({len(self)} structures) has stoichiometry {anonymized_formula(counts)} "
                f"with {natoms} atoms (or a divisor of it)"
            )
        scored.sort(key=lambda item: item[:3])
        kept: list[tuple[np.ndarray, list]] = []
        for m, prior, row, i, group, mapping in scored:
            repeated = {z: np.repeat(f, m, axis=0) for z, f in group.fingerprints[i].items()}
            fingerprint = _arrange(repeated, np.repeat(group.atoms[i].numbers, m), mapping, target_roles)
            for other in kept:
                if other[0].shape == fingerprint.shape and np.max(np.abs(other[0] - fingerprint)) < FINGERPRINT_TOL:
                    other[1][-1] += 1
                    break
            else:
                kept.append((fingerprint, [m, prior, row, i, group, mapping, 0]))
        return [self._substitute(counts, *entry) for _, entry in kept]

    # ------------------------------------------------------------------------------- internals
    def _build(self, group: _Group) -> None:
        if group.atoms:
            return
        for row in group.rows:
            atoms = Atoms(numbers=self._numbers[row], cell=self._cells[row], scaled_positions=self._fracs[row],
                          pbc=True)
            group.atoms.append(atoms)
            group.fingerprints.append(neighbour_fingerprint(atoms))

    def _element(self, symbol: str) -> tuple[float, float]:
        """(Pauling electronegativity, covalent radius) of an element; noble gases get chi = 0."""
        if symbol not in self._element_table:
            from pymatgen.core import Element

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                chi = float(Element(symbol).X)
            self._element_table[symbol] = (0.0 if np.isnan(chi) else chi, float(covalent_radii[atomic_numbers[symbol]]))
        return self._element_table[symbol]

    def _role_order(self, counts: Mapping[str, int]) -> list[str]:
        """Elements sorted by (count, electronegativity, Z)."""
        return sorted(counts, key=lambda s: (counts[s], self._element(s)[0], atomic_numbers[s]))

    def _mappings(self, template: Mapping[str, int], target_roles: list[str],
                  target: Mapping[str, int]) -> list[tuple[dict[str, str], float]]:
        """Every allowed template -> target element mapping with its prior."""
        roles = self._role_order(template)
        reduced_t = [template[s] for s in roles]
        reduced_g = [target[s] for s in target_roles]
        ratio_t = [c / min(reduced_t) for c in reduced_t]
        ratio_g = [c / min(reduced_g) for c in reduced_g]
        if not np.allclose(ratio_t, ratio_g):
            return []
        ties: list[list[int]] = []
        for i, c in enumerate(reduced_g):
            if ties and reduced_g[ties[-1][0]] == c:
                ties[-1].append(i)
            else:
                ties.append([i])
        options = [itertools.permutations(t) if len(t) <= MAX_TIE_PERMUTED else [tuple(t)] for t in ties]
        out = []
        for choice in itertools.product(*options):
            order = [i for block in choice for i in block]  # target role index for each template role
            mapping = {roles[k]: target_roles[order[k]] for k in range(len(roles))}
            prior = sum(self._distance(a, b) for a, b in mapping.items())
            out.append((mapping, prior))
        return out

    def _distance(self, a: str, b: str) -> float:
        (xa, ra), (xb, rb) = self._element(a), self._element(b)
        return abs(xa - xb) / CHI_SCALE + abs(ra - rb) / RADIUS_SCALE

    def _substitute(self, counts, m, prior, row, i, group, mapping, n_duplicates) -> TemplateCandidate:
        template = group.atoms[i]
        atoms = Atoms([mapping[chemical_symbols[z]] for z in template.numbers], cell=template.cell[:],
                      scaled_positions=template.get_scaled_positions(), pbc=True)
        if m > 1:
            reps = [1, 1, 1]
            reps[int(np.argmin(np.linalg.norm(template.cell[:], axis=1)))] = m
            atoms = atoms.repeat(reps)
        ratio = sphere_volume(counts) / (m * sphere_volume(self._counts[row]))
        atoms.set_cell(atoms.cell[:] * ratio ** (1.0 / 3.0), scale_atoms=True)
        atoms.info.update(template_id=self.material_ids[row], template_formula=template.get_chemical_formula(),
                          template_prior=float(prior), template_supercell=int(m))
        return TemplateCandidate(atoms, self.material_ids[row], template.get_chemical_formula(), dict(mapping),
                                 float(prior), int(m), int(n_duplicates))


def neighbour_fingerprint(atoms: Atoms, *, k: int = FINGERPRINT_NEIGHBOURS) -> dict[int, np.ndarray]:
    """For each element Z: (n_atoms, k) shortest distances from every atom to atoms of Z.

    Distances are in units of ``(V / N)^(1/3)``, so the fingerprint ignores isotropic scaling;
    periodic images count, and distances beyond the search radius read as that radius.
    """
    n = len(atoms)
    scale = (atoms.get_volume() / n) ** (1.0 / 3.0)
    cell = atoms.cell[:] / scale
    pos = atoms.get_positions() / scale
    heights = 1.0 / np.linalg.norm(np.linalg.inv(cell), axis=0)
    reach = np.ceil(FINGERPRINT_RADIUS / heights).astype(int)
    grid = np.array(list(itertools.product(*[range(-r, r + 1) for r in reach])), dtype=float) @ cell  # (K, 3)
    diff = pos[None, :, None, :] - pos[:, None, None, :] + grid[None, None]  # (n, n, K, 3)
    dist = np.linalg.norm(diff, axis=-1)  # (n, n, K)
    dist[dist < 1e-8] = np.inf
    out = {}
    for z in np.unique(atoms.numbers):
        to_z = np.sort(dist[:, atoms.numbers == z].reshape(n, -1), axis=1)[:, :k]  # (n, k)
        out[int(z)] = np.minimum(to_z, FINGERPRINT_RADIUS)
    return out


def _arrange(fingerprint: Mapping[int, np.ndarray], numbers: np.ndarray, mapping: Mapping[str, str],
             target_roles: Sequence[str]) -> np.ndarray:
    """One vector per candidate: atoms grouped by target element (role order), each atom's distances to
    every target element (role order), rows sorted within a group."""
    inverse = {target: atomic_numbers[template] for template, target in mapping.items()}
    columns = np.concatenate([fingerprint[inverse[e]] for e in target_roles], axis=1)  # (n, n_el * k)
    targets = np.array([mapping[chemical_symbols[z]] for z in numbers])
    parts = []
    for symbol in target_roles:
        rows = columns[targets == symbol]
        parts.append(rows[np.lexsort(rows.T[::-1])].ravel())
    return np.concatenate(parts)


def default_reference() -> Path:
    """The bundled model's training set (``models/<default model>/*.h5``)."""
    from ase_unimat.generate import DEFAULT_MODEL, models_dirs

    for folder in models_dirs():
        found = sorted((folder / DEFAULT_MODEL).glob("*.h5"))
        if found:
            return found[0]
    raise FileNotFoundError(
        f"no bundled template reference (models/{DEFAULT_MODEL}/*.h5); pass a UniMat HDF5 file or a folder of "
        "CIFs as the template reference"
    )
