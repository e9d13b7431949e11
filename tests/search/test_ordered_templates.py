"""Ordered substitution: merges, symmetry-distinct orderings, candidates and the template source option."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from ase.build import bulk

from ase_unimat.core.formula import anonymized_formula
from ase_unimat.search.ordered_templates import merged_compositions, merges, ordered_candidates, orderings
from ase_unimat.search.templates import NoTemplateError, TemplateIndex


def _group(atoms) -> int:
    import spglib

    return spglib.get_symmetry_dataset((atoms.cell[:], atoms.get_scaled_positions(), atoms.numbers),
                                       symprec=1e-3).number  # fmt: skip


@pytest.fixture(scope="module")
def index():
    parents = [bulk("Cu", "fcc", a=3.6, cubic=True), bulk("NaCl", "rocksalt", a=5.64, cubic=True)]
    return TemplateIndex.from_atoms(parents, ["fcc", "nacl"])


def test_merges_put_the_guest_on_the_host_sites_cheapest_first(index):
    found = merges(index, {"Fe": 6, "Ni": 2, "P": 4})
    assert (found[0].host, found[0].guest, found[0].n_guest, found[0].counts) == ("Fe", "Ni", 2, {"Fe": 8, "P": 4})
    assert [m.cost for m in found] == sorted(m.cost for m in found) and len(found) == 3
    patterns = sorted(anonymized_formula(c) for c in merged_compositions({"Fe": 6, "Ni": 2, "P": 4}))
    assert patterns == sorted(anonymized_formula(c) for c in ({"X": 8, "Y": 4}, {"X": 10, "Y": 2}, {"X": 6, "Y": 6}))


def test_orderings_are_symmetry_distinct_and_most_symmetric_first():
    parent = bulk("CsCl", "cesiumchloride", a=4.1).repeat(2)  # 8 Cl on a simple-cubic lattice
    two = orderings(parent, "Cl", "Br", 2)
    assert len(two) == 3  # Br pairs along an edge, a face diagonal, a body diagonal
    assert all(a.get_chemical_formula() == "Br2Cl6Cs8" for a in two)
    assert len(orderings(parent, "Cl", "Br", 1)) == 1 and orderings(parent, "Cl", "Br", 8) == []
    capped = orderings(parent, "Cl", "Br", 4, max_combinations=10, seed=1)
    assert 1 <= len(capped) <= 10


def test_ordered_candidates_build_l12_and_l10_from_fcc(index):
    cu3au = ordered_candidates(index, {"Cu": 3, "Au": 1})
    assert cu3au[0].material_id == "fcc" and _group(cu3au[0].atoms) == 221  # L1_2, Pm-3m
    assert cu3au[0].atoms.info["template_ordering"] == "Au on Cu sites #0"
    cuau = ordered_candidates(index, {"Cu": 2, "Au": 2})
    assert _group(cuau[0].atoms) == 123  # L1_0, P4/mmm
    fcc_cu = bulk("Cu", "fcc", a=3.6, cubic=True).get_volume()
    assert cu3au[0].atoms.get_volume() > fcc_cu  # Au is larger: rescaled by the covalent-sphere volumes


def test_no_parent_is_a_no_template_error(index):
    with pytest.raises(NoTemplateError, match="ordered-substitution"):
        ordered_candidates(index, {"Mg": 2, "Si": 1, "O": 4})


def test_template_source_merges_prototype_and_ordered_candidates_by_prior(index):
    from ase_unimat.search.template_seeds import MergedByPrior, TemplateSeedSource

    def cands(*keys):
        return [SimpleNamespace(supercell=m, prior=p, name=f"{m}/{p}") for m, p in keys]

    merged = MergedByPrior(cands((1, 0.5), (1, 2.0), (2, 0.1)), cands((1, 1.0), (1, 0.2), (1, 2.0)))
    assert [c.name for c in merged] == ["1/0.5", "1/1.0", "1/0.2", "1/2.0", "1/2.0", "2/0.1"]  # heads compared
    assert [c.name for c in MergedByPrior([], cands((1, 3.0)))] == ["1/3.0"] and merged[-1].name == "2/0.1"
    plain = TemplateSeedSource(reference=index, ordered=False)
    ordered = TemplateSeedSource(reference=index)  # the default
    counts = {"K": 4, "Br": 4}  # a rocksalt template exists; KBr on fcc sites is an ordering too
    both = ordered.candidates(counts)
    n_plain = len(plain.candidates(counts))
    assert n_plain >= 1 and len(both) > n_plain
    seeds = ordered.make(counts, range(len(both)), run_seed=0)
    kinds = ["template_ordering" in s.atoms.info for s in seeds]
    assert kinds.count(False) == n_plain and any(kinds)
    only_ordered = ordered.make({"Cu": 3, "Au": 1}, [0], run_seed=0)  # no Cu3Au-like reference: orderings alone
    assert only_ordered[0].atoms.info["template_id"] == "fcc"
    with pytest.raises(NoTemplateError):
        plain.make({"Cu": 3, "Au": 1}, [0], run_seed=0)
    with pytest.raises(NoTemplateError, match="neither"):
        ordered.make({"Mg": 2, "Si": 1, "O": 4}, [0], run_seed=0)
