"""Prototype substitution: known structures with the target's stoichiometry, elements swapped in.

Reference set: a UniMat HDF5 dataset (``ase_unimat.data.hdf5`` layout, read with plain h5py: the
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
- **Duplicates**: two candidates are the same when their fingerprint keys agree
  (:mod:`ase_unimat.search.template_fingerprint`: for every atom the 4 shortest distances to atoms of each
  target element, in units of ``(V/N)^(1/3)``, quantised to 0.05 and hashed); only the best-ranked
  one is kept and counts the others in ``n_duplicates``. A supercell candidate can match a template
  of full size.
- **Speed**: a group's fingerprints are computed in one vectorised pass on its first lookup;
  priors, keys and deduplication are array operations, and only kept candidates become Atoms.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
from ase import Atoms
from ase.data import atomic_numbers, chemical_symbols, covalent_radii
from ase.io import read

from ase_unimat.core.formula import anonymized_formula, format_formula, formula_label
from ase_unimat.core.representation import decode, lattices_to_cells
from ase_unimat.model.bundled import DEFAULT_MODEL, models_dirs
from ase_unimat.search.seeds import NoSeedsForFormula
from ase_unimat.search.template_fingerprint import keys as fingerprint_keys
from ase_unimat.search.template_fingerprint import role_distances
from ase_unimat.search.volume import sphere_volume

CHI_SCALE = 0.5
RADIUS_SCALE = 0.2
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


class LazyCandidates(Sequence[TemplateCandidate]):
    """A ranked candidate sequence whose items are made on access: indexing, slices and bounds here;
    subclasses give ``__len__`` and ``_item(i)`` for ``0 <= i < len``."""

    def _item(self, i: int) -> TemplateCandidate:
        raise NotImplementedError

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if not -len(self) <= i < len(self):
            raise IndexError(f"candidate {i} out of range ({len(self)} candidates)")
        return self._item(i % len(self))


class CandidateList(LazyCandidates):
    """Ranked candidates, each turned into Atoms on first access (ranking and dedup are done)."""

    def __init__(self, slots: list[int], build) -> None:
        self._slots = slots
        self._build = build
        self._made: dict[int, TemplateCandidate] = {}

    def __len__(self) -> int:
        return len(self._slots)

    def _item(self, i: int) -> TemplateCandidate:
        if i not in self._made:
            self._made[i] = self._build(self._slots[i])
        return self._made[i]


@dataclass
class _Group:
    """The structures of one (anonymized formula, natoms) key, arrays built on first use."""

    rows: list[int]
    role_z: np.ndarray | None = None  # (G, E) atomic number of each role (elements by count, chi, Z)
    distances: np.ndarray | None = None  # (G, n, E, k) fingerprint distances per role
    atom_roles: np.ndarray | None = None  # (G, n)
    keys: dict[tuple, np.ndarray] = field(default_factory=dict)  # (repeat, perm) -> (G,) uint64


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
        self._chi: np.ndarray | None = None

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
        cells = list(lattices_to_cells(lattice))
        return cls(numbers, cells, fracs, ids, source=str(path))

    @classmethod
    def from_cif_dir(cls, path: str | Path) -> TemplateIndex:
        """Index every ``*.cif`` of a folder (id = file stem)."""

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
                   max_supercell: int = 4, max_candidates: int | None = None) -> CandidateList:
        """Substituted, rescaled, deduplicated templates for ``counts``, best first.

        Parameters
        ----------
        counts
            Element -> atoms in the target cell.
        exclude_ids
            Reference ids never used (leave-one-out).
        max_supercell
            Largest ``m`` for templates of ``natoms / m`` atoms.
        max_candidates
            Keep at most this many (the best ones); None keeps all.

        Returns
        -------
        CandidateList
            A sequence of :class:`TemplateCandidate`, best first; each becomes Atoms when accessed.

        Raises
        ------
        NoTemplateError
            When no reference structure has this stoichiometry and a fitting number of atoms.
        """
        counts = {s: int(n) for s, n in counts.items()}
        excluded = set(exclude_ids)
        natoms = sum(counts.values())
        target_roles = self._role_order(counts)
        perms = _tie_permutations([counts[s] for s in target_roles])  # (P, E)
        chi = self._chi_table()
        target_z = np.array([atomic_numbers[s] for s in target_roles])  # (E,)
        parts = []
        for m in range(1, max_supercell + 1):
            group = self._keys.get((anonymized_formula(counts), natoms // m)) if natoms % m == 0 else None
            if group is None:
                continue
            self._build(group)
            keep = np.array([self.material_ids[row] not in excluded for row in group.rows])
            if not keep.any():
                continue
            tz = group.role_z  # (G, E)
            gz = target_z[perms]  # (P, E) target element of template role k under each permutation
            prior = (np.abs(chi[tz][:, None, :] - chi[gz][None]) / CHI_SCALE
                     + np.abs(covalent_radii[tz][:, None, :] - covalent_radii[gz][None]) / RADIUS_SCALE).sum(-1)  # (G, P)
            key = np.stack([self._group_keys(group, tuple(p), m) for p in perms], axis=1)  # (G, P)
            g_idx, p_idx = np.nonzero(np.broadcast_to(keep[:, None], prior.shape))
            parts.append((np.full(len(g_idx), m), prior[g_idx, p_idx], np.asarray(group.rows)[g_idx], g_idx, p_idx,
                          key[g_idx, p_idx], [group] * len(g_idx)))
        if not parts:
            raise NoTemplateError(
                f"no template for {formula_label(counts)}: no structure in {self.source} ({len(self)} structures) "
                f"has stoichiometry {anonymized_formula(counts)} with {natoms} atoms (or a divisor of it)"
            )
        m_all, prior_all, row_all, g_all, p_all, key_all = (np.concatenate([p[i] for p in parts]) for i in range(6))
        groups = [g for p in parts for g in p[6]]
        order = np.lexsort((row_all, prior_all, m_all))  # rank: supercell factor, prior, reference row
        _, first, n_same = np.unique(key_all[order], return_index=True, return_counts=True)
        ranked = np.argsort(first)
        if max_candidates is not None:
            ranked = ranked[:max_candidates]

        def build(u: int) -> TemplateCandidate:
            i = order[first[u]]
            group, g, perm = groups[i], int(g_all[i]), perms[p_all[i]]
            mapping = {chemical_symbols[int(group.role_z[g, k])]: target_roles[perm[k]] for k in range(len(perm))}
            return self._substitute(counts, int(m_all[i]), float(prior_all[i]), int(row_all[i]), mapping,
                                    int(n_same[u] - 1))

        return CandidateList([int(u) for u in ranked], build)

    def precompute(self) -> None:
        """Build every group's fingerprints now (about 1 ms per structure on 2 CPU cores) so lookups are all warm."""
        for group in self._keys.values():
            self._build(group)

    def electronegativities(self) -> np.ndarray:
        """Pauling electronegativity by atomic number (0 where undefined), as the prior uses it."""
        return self._chi_table()

    # ------------------------------------------------------------------------------- internals
    def _chi_table(self) -> np.ndarray:
        """Pauling electronegativity by atomic number (0 where undefined, e.g. noble gases)."""
        if self._chi is None:
            from pymatgen.core import Element  # pymatgen is slow to import

            table = np.zeros(len(chemical_symbols))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for z in range(1, 104):
                    x = float(Element.from_Z(z).X)
                    table[z] = 0.0 if np.isnan(x) else x
            self._chi = table
        return self._chi

    def _role_order(self, counts: Mapping[str, int]) -> list[str]:
        """Elements sorted by (count, electronegativity, Z)."""
        chi = self._chi_table()
        return sorted(counts, key=lambda s: (counts[s], chi[atomic_numbers[s]], atomic_numbers[s]))

    def _build(self, group: _Group) -> None:
        """Role tables and fingerprint distances of every structure of a group (vectorised)."""
        if group.distances is not None:
            return
        role_z, atom_roles = [], []
        for row in group.rows:
            order = [atomic_numbers[s] for s in self._role_order(self._counts[row])]
            role_of = {z: r for r, z in enumerate(order)}
            role_z.append(order)
            atom_roles.append([role_of[int(z)] for z in self._numbers[row]])
        group.role_z = np.array(role_z, dtype=np.int64)
        group.atom_roles = np.array(atom_roles, dtype=np.int64)
        cells = np.stack([self._cells[row] for row in group.rows])
        fracs = np.stack([self._fracs[row] for row in group.rows])
        group.distances = role_distances(cells, fracs, group.atom_roles, group.role_z.shape[1])

    def _group_keys(self, group: _Group, perm: tuple[int, ...], repeat: int) -> np.ndarray:
        cache_key = (repeat, perm)
        if cache_key not in group.keys:
            group.keys[cache_key] = fingerprint_keys(group.distances, group.atom_roles, perm, repeat=repeat)
        return group.keys[cache_key]

    def _substitute(self, counts, m, prior, row, mapping, n_duplicates) -> TemplateCandidate:
        cell = self._cells[row]
        symbols = [mapping[chemical_symbols[z]] for z in self._numbers[row]]
        atoms = Atoms(symbols, cell=cell, scaled_positions=self._fracs[row], pbc=True)
        if m > 1:
            reps = [1, 1, 1]
            reps[int(np.argmin(np.linalg.norm(cell, axis=1)))] = m
            atoms = atoms.repeat(reps)
        ratio = sphere_volume(counts) / (m * sphere_volume(self._counts[row]))
        atoms.set_cell(atoms.cell[:] * ratio ** (1.0 / 3.0), scale_atoms=True)
        formula = format_formula(self._counts[row])
        atoms.info.update(template_id=self.material_ids[row], template_formula=formula, template_prior=prior,
                          template_supercell=m)
        return TemplateCandidate(atoms, self.material_ids[row], formula, dict(mapping), prior, m, n_duplicates)


def _tie_permutations(sorted_counts: Sequence[int]) -> np.ndarray:
    """(P, E) role permutations: roles with equal counts may swap (blocks up to MAX_TIE_PERMUTED)."""
    blocks: list[list[int]] = []
    for i, c in enumerate(sorted_counts):
        if blocks and sorted_counts[blocks[-1][0]] == c:
            blocks[-1].append(i)
        else:
            blocks.append([i])
    options = [list(itertools.permutations(b)) if len(b) <= MAX_TIE_PERMUTED else [tuple(b)] for b in blocks]
    return np.array([[i for block in choice for i in block] for choice in itertools.product(*options)], dtype=np.int64)


def default_reference() -> Path:
    """The bundled model's training set (``models/<default model>/*.h5``)."""

    for folder in models_dirs():
        found = sorted((folder / DEFAULT_MODEL).glob("*.h5"))
        if found:
            return found[0]
    raise FileNotFoundError(
        f"no bundled template reference (models/{DEFAULT_MODEL}/*.h5); pass a UniMat HDF5 file or a folder of "
        "CIFs as the template reference"
    )
