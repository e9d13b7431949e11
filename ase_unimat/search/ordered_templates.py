"""Ordered substitution: a parent structure whose sites of one element are shared by two elements.

Prototype substitution (:mod:`ase_unimat.search.templates`) maps a template onto a target of the same
stoichiometry, so a target like Fe3NiP2 (an ordered Co2P-type M2P) is out of its reach: no A3BC2
reference has that arrangement. Its parent is there, though (Co2P, Fe2P: M2P with 8 M sites in a
12-atom cell), and the target is one of the ways of putting 2 Ni on those 8 sites. Rules:

- **Merges**: for every pair of target elements (host ``A``, guest ``B``; the host is the one with
  more atoms, then lower electronegativity, then lower Z), the *merged* composition puts B's atoms
  on A's: Fe6Ni2P4 -> Fe8P4. Each merge costs ``|chi_A - chi_B| / 0.5 + |r_A - r_B| / 0.2 A``, the
  substitution distance of the templates' prior.
- **Parents**: the best ``max_parents`` prototype-substitution candidates of each merged composition
  (:meth:`~ase_unimat.search.templates.TemplateIndex.candidates`, so the same references, exclusions and
  ranking), each scored by its prior plus the merge's cost.
- **Orderings**: every way of choosing the guest's sites among the host's sites of a parent, less
  those equivalent under the parent's space group (spglib at ``symprec`` 0.01 A); when there are more
  than ``max_combinations`` ways, a seeded random subset of that size. Orderings are ranked by the
  number of the parent's operations that keep them (most symmetric first), then by the shortest
  guest-guest distance (guests spread out first).
- **Ranking**: parents by (supercell factor, score); the candidate list takes each parent's best
  ordering in turn, then each one's second best, and so on (``max_orderings`` per parent).
- **Volume**: rescaled by the ratio of summed covalent-sphere volumes of target and merged
  composition, as templates are.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from ase.data import atomic_numbers, covalent_radii

from ase_unimat.core.formula import formula_label
from ase_unimat.search.symmetry import SymmetryError, symmetry_operations
from ase_unimat.search.templates import CHI_SCALE, RADIUS_SCALE, NoTemplateError, TemplateCandidate, TemplateIndex
from ase_unimat.search.volume import sphere_volume

MAX_PARENTS = 4  # parents per merged composition
MAX_ORDERINGS = 8  # orderings kept per parent
MAX_COMBINATIONS = 20_000  # site choices examined per parent (a seeded subset beyond this)


@dataclass(frozen=True)
class Merge:
    """Target ``counts`` seen as a parent composition: the ``guest``'s atoms on ``host`` sites."""

    counts: dict[str, int]  # the merged (parent) composition
    host: str
    guest: str
    n_guest: int
    cost: float  # chemical distance of guest from host (the templates' prior scale)


def merges(index: TemplateIndex, counts: Mapping[str, int]) -> list[Merge]:
    """Every pairwise merge of the target's elements, cheapest first."""
    chi = index.electronegativities()
    out = []
    for a, b in itertools.combinations(sorted(counts), 2):
        host, guest = sorted((a, b), key=lambda s: (-counts[s], chi[atomic_numbers[s]], atomic_numbers[s]))
        merged = _merged(counts, host, guest)
        za, zb = atomic_numbers[host], atomic_numbers[guest]
        cost = abs(chi[za] - chi[zb]) / CHI_SCALE + abs(covalent_radii[za] - covalent_radii[zb]) / RADIUS_SCALE
        out.append(Merge(merged, host, guest, int(counts[guest]), float(cost)))
    return sorted(out, key=lambda m: (m.cost, m.host, m.guest))


def merged_compositions(counts: Mapping[str, int]) -> list[dict[str, int]]:
    """The parent compositions of every pairwise merge (host/guest roles do not change which)."""
    return [_merged(counts, a, b) for a, b in itertools.combinations(sorted(counts), 2)]


def _merged(counts: Mapping[str, int], host: str, guest: str) -> dict[str, int]:
    """``counts`` with the guest's atoms counted as the host's."""
    merged = {s: int(n) for s, n in counts.items() if s != guest}
    merged[host] += int(counts[guest])
    return merged


def orderings(parent, host: str, guest: str, n_guest: int, *, max_combinations: int = MAX_COMBINATIONS,
              seed: int = 0) -> list:  # fmt: skip
    """Symmetry-distinct structures with ``n_guest`` of ``parent``'s ``host`` atoms turned into ``guest``, best first."""

    sites = [i for i, s in enumerate(parent.get_chemical_symbols()) if s == host]
    if not 0 < n_guest < len(sites):
        return []
    try:
        _, _, perms = symmetry_operations(parent, symprec=0.01)  # (K, N)
    except SymmetryError:
        perms = np.arange(len(parent))[None, :]
    total = math.comb(len(sites), n_guest)
    if total <= max_combinations:
        choices: Iterable[tuple[int, ...]] = itertools.combinations(sites, n_guest)
    else:
        rng = np.random.default_rng(seed)
        choices = {tuple(sorted(rng.choice(sites, n_guest, replace=False).tolist())) for _ in range(max_combinations)}
        choices = sorted(choices)
    distances = parent.get_all_distances(mic=True)
    found: dict[tuple[int, ...], tuple[int, float]] = {}
    for combo in choices:
        images = np.sort(perms[:, list(combo)], axis=1)  # (K, n_guest): the choice under every operation
        key = min(map(tuple, images.tolist()))
        if key in found:
            continue
        kept = int(np.sum(np.all(images == np.array(sorted(combo)), axis=1)))  # operations that keep it
        spread = float(min((distances[i, j] for i, j in itertools.combinations(combo, 2)), default=0.0))
        found[key] = (kept, spread)
    ranked = sorted(found, key=lambda k: (-found[k][0], -round(found[k][1], 3), k))
    out = []
    for key in ranked:
        atoms = parent.copy()
        symbols = atoms.get_chemical_symbols()
        for i in key:
            symbols[i] = guest
        atoms.set_chemical_symbols(symbols)
        out.append(atoms)
    return out


def ordered_candidates(index: TemplateIndex, counts: Mapping[str, int], *, exclude_ids: Iterable[str] = (),
                       max_parents: int = MAX_PARENTS, max_orderings: int = MAX_ORDERINGS) -> list[TemplateCandidate]:
    """Ordered-substitution candidates for ``counts``, best first (see the module docstring).

    Raises
    ------
    NoTemplateError
        When no merged composition has a parent in the reference set (or none can be ordered).
    """
    counts = {s: int(n) for s, n in counts.items()}
    excluded = set(exclude_ids)
    parents = []  # (supercell, score, order, merge, parent candidate, its orderings)
    for merge in merges(index, counts):
        try:
            found = index.candidates(merge.counts, exclude_ids=excluded, max_candidates=max_parents)
        except NoTemplateError:
            continue
        for parent in found:
            derived = orderings(parent.atoms, merge.host, merge.guest, merge.n_guest)[:max_orderings]
            if derived:
                parents.append((parent.supercell, merge.cost + parent.prior, len(parents), merge, parent, derived))
    if not parents:
        raise NoTemplateError(f"no ordered-substitution template for {formula_label(counts)}: no parent composition with "
                              "one element fewer has a fitting reference structure")  # fmt: skip
    parents.sort(key=lambda p: p[:3])
    out = []
    for j in range(max(len(p[5]) for p in parents)):
        for _, score, _, merge, parent, derived in parents:
            if j >= len(derived):
                continue
            ratio = (sphere_volume(counts) / sphere_volume(merge.counts)) ** (1.0 / 3.0)
            atoms = derived[j]
            atoms.set_cell(atoms.cell[:] * ratio, scale_atoms=True)
            atoms.info.update(parent.atoms.info)
            atoms.info.update(template_prior=score, template_ordering=f"{merge.guest} on {merge.host} sites #{j}")
            out.append(TemplateCandidate(atoms, parent.material_id, parent.template_formula,
                                         {**parent.mapping, f"{merge.host} sites": f"{merge.host}+{merge.guest}"},
                                         score, parent.supercell))  # fmt: skip
    return out
