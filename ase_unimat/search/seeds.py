"""Where starting structures come from: the ``Seed`` record, the ``SeedSource`` protocol and mixing.

Reproducibility contract (ARCHITECTURE.md): seed ``k`` of a run depends only on
``(run_seed, source, k)``. Every source draws its randomness from :func:`seed_rng` (or the integer
:func:`derive_seed`), which hashes exactly that triple, so ``-n 100`` after ``-n 50`` keeps the
first 50 seeds and adds 50 new ones.

Mixing (``"unimat:0.5,template:0.3,random:0.2"``) assigns each index to one source with
:func:`allocate`, a deterministic "largest deficit" rule: index ``k`` goes to the source whose
count so far falls furthest below ``weight * (k + 1)`` (ties: the order written in the spec).
The allocation of index ``k`` depends only on the weights and on ``k``, never on ``n``, so it is
prefix-stable, and every prefix of length ``n`` holds each source ``weight * n`` times to within
one seed. It does not depend on ``run_seed``.

Fallback: a source that cannot build this formula at all (no template with this stoichiometry, too
many atoms of one element for the model) raises :class:`NoSeedsForFormula`. In a mixed run the
indices are then re-allocated among the remaining sources (weights renormalised) and a warning
names the dropped source; a pure run re-raises the source's own message.
"""

from __future__ import annotations

import warnings
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
from ase import Atoms

from ase_unimat.core.formula import formula_label

#: Source names a spec may use.
SOURCE_NAMES = ("unimat", "unimat-template", "unimat-sym", "template", "random", "random-sym", "cell")


class SeedSourceError(ValueError):
    """A seed source that is misconfigured or cannot make seeds."""


class NoSeedsForFormula(SeedSourceError):
    """A source that cannot make any seed for this composition (a mixed run falls back to the others)."""


@dataclass(frozen=True)
class Seed:
    """One unrelaxed starting structure and where it came from."""

    id: str  # reproducible, e.g. "Mg2SiO4-unimat-000017"
    source: str  # "unimat" | "unimat-template" | "unimat-sym" | "template" | "random" | "random-sym" | "cell"
    atoms: Atoms  # unrelaxed; info has "source", "seed", "index" and source-specific keys


@runtime_checkable
class SeedSource(Protocol):
    """Anything that turns (composition, indices, run seed) into seeds."""

    name: str

    def make(self, counts: Mapping[str, int], indices: Sequence[int], *, run_seed: int) -> list[Seed]:
        """Seeds for ``indices`` (in that order); seed ``k`` depends only on ``(run_seed, name, k)``."""
        ...


def seed_id(counts: Mapping[str, int], source: str, index: int) -> str:
    """Reproducible seed id ``"<formula>-<source>-<index:06d>"``."""
    return f"{formula_label(counts)}-{source}-{int(index):06d}"


def derive_seed(run_seed: int, source: str, index: int) -> int:
    """A 63-bit integer seed that depends only on ``(run_seed, source, index)``.

    The source name enters through CRC32 (stable across processes, unlike ``hash``) and the triple
    through ``numpy.random.SeedSequence``, so neighbouring indices get unrelated streams.
    """
    if int(index) < 0 or int(run_seed) < 0:
        raise SeedSourceError(f"run seed and index must be non-negative, got run_seed={run_seed}, index={index}")
    sequence = np.random.SeedSequence([int(run_seed), zlib.crc32(source.encode()), int(index)])
    return int(sequence.generate_state(1, dtype=np.uint64)[0]) >> 1


def seed_rng(run_seed: int, source: str, index: int) -> np.random.Generator:
    """The random generator of seed ``index`` of ``source`` in run ``run_seed``."""
    return np.random.default_rng(derive_seed(run_seed, source, index))


def make_seed(atoms: Atoms, counts: Mapping[str, int], source: str, index: int, *, run_seed: int, **info: Any) -> Seed:
    """Wrap ``atoms`` as a :class:`Seed`, writing the provenance keys into ``atoms.info``."""
    atoms.info.update(info)
    atoms.info.update(
        source=source, index=int(index), run_seed=int(run_seed), seed=derive_seed(run_seed, source, index)
    )
    return Seed(id=seed_id(counts, source, index), source=source, atoms=atoms)


def parse_seed_spec(spec: str) -> dict[str, float]:
    """Source weights of a seed spec, normalised to sum to 1, in the order written.

    ``"random"`` -> ``{"random": 1.0}``; ``"mixed:0.7"`` -> ``{"unimat": 0.7, "random": 0.3}``
    (``"mixed"`` alone means ``mixed:0.5``); ``"unimat:0.5,template:0.3,random:0.2"`` -> as written.
    A name without a weight inside a list gets weight 1 (``"unimat,random"`` is half and half).
    """
    if not isinstance(spec, str) or not spec.strip():
        raise SeedSourceError("empty seed spec; use e.g. 'unimat', 'random', 'mixed:0.7' or 'unimat:0.5,random:0.5'")
    spec = spec.strip().lower()
    if spec == "mixed" or spec.startswith("mixed:"):
        fraction = _parse_weight(spec.partition(":")[2] or "0.5", spec)
        if not 0.0 <= fraction <= 1.0:
            raise SeedSourceError(f"mixed fraction must be in [0, 1], got {fraction} in {spec!r}")
        weights = {"unimat": fraction, "random": 1.0 - fraction}
        return {name: w for name, w in weights.items() if w > 0}
    weights: dict[str, float] = {}
    for part in spec.split(","):
        name, _, value = (p.strip() for p in part.partition(":"))
        if name not in SOURCE_NAMES:
            raise SeedSourceError(f"unknown seed source {name!r} in {spec!r}; known: {', '.join(SOURCE_NAMES)}, mixed")
        if name in weights:
            raise SeedSourceError(f"seed source {name!r} appears twice in {spec!r}")
        weight = _parse_weight(value or "1", spec)
        if weight < 0:
            raise SeedSourceError(f"negative weight for {name!r} in {spec!r}")
        weights[name] = weight
    total = sum(weights.values())
    if total <= 0:
        raise SeedSourceError(f"seed weights in {spec!r} sum to zero")
    return {name: w / total for name, w in weights.items() if w > 0}


def _parse_weight(text: str, spec: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise SeedSourceError(f"weight {text!r} in seed spec {spec!r} is not a number") from None
    if not np.isfinite(value):
        raise SeedSourceError(f"weight {text!r} in seed spec {spec!r} is not finite")
    return value


def allocate(weights: Mapping[str, float], n: int) -> list[str]:
    """Source name of indices ``0 .. n-1`` under the largest-deficit rule (prefix-stable)."""
    names = list(weights)
    if not names:
        raise SeedSourceError("no seed sources to allocate between")
    w = np.array([weights[name] for name in names], dtype=np.float64)
    w = w / w.sum()
    counts = np.zeros(len(names))
    out = []
    for k in range(int(n)):
        deficit = w * (k + 1) - counts
        choice = int(np.argmax(deficit + 1e-12 * (len(names) - np.arange(len(names)))))
        counts[choice] += 1
        out.append(names[choice])
    return out


@dataclass
class MixedSeedSource:
    """A weighted mix of sources behaving as one :class:`SeedSource` (also used for pure runs).

    Parameters
    ----------
    sources
        Source name (as in the spec) -> source object.
    weights
        Source name -> weight (any positive scale).
    """

    sources: dict[str, SeedSource]
    weights: dict[str, float]
    name: str = "mixed"
    _dropped: dict[str, dict[tuple, str]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if set(self.sources) != set(self.weights):
            raise SeedSourceError(f"sources {sorted(self.sources)} and weights {sorted(self.weights)} differ")
        if len(self.weights) == 1:
            self.name = next(iter(self.sources.values())).name

    def allocation(self, counts: Mapping[str, int], n: int) -> list[str]:
        """Source name of indices ``0 .. n-1`` for this composition (after any fallback)."""
        return allocate(self._usable_weights(counts), n)

    def make(self, counts: Mapping[str, int], indices: Sequence[int], *, run_seed: int) -> list[Seed]:
        """Seeds for ``indices``, each built by the source its index is allocated to."""
        indices = [int(k) for k in indices]
        if not indices:
            return []
        while True:
            weights = self._usable_weights(counts)
            names = allocate(weights, max(indices) + 1)
            by_source: dict[str, list[int]] = {}
            for k in indices:
                by_source.setdefault(names[k], []).append(k)
            made: dict[int, Seed] = {}
            try:
                for source_name, wanted in by_source.items():
                    seeds = self.sources[source_name].make(counts, wanted, run_seed=run_seed)
                    if len(seeds) != len(wanted):
                        raise SeedSourceError(
                            f"seed source {source_name!r} returned {len(seeds)} seeds for {len(wanted)} indices"
                        )
                    made.update(zip(wanted, seeds, strict=True))
            except NoSeedsForFormula as err:
                if len(self.sources) == 1:
                    raise
                self._drop(source_name, counts, str(err))
                continue
            return [made[k] for k in indices]

    def _drop(self, source_name: str, counts: Mapping[str, int], reason: str) -> None:
        key = tuple(sorted(counts.items()))
        self._dropped.setdefault(source_name, {})[key] = reason
        remaining = [n for n in self.weights if key not in self._dropped.get(n, {})]
        if not remaining:
            reasons = "; ".join(f"{n}: {self._dropped[n][key]}" for n in self.weights)
            raise NoSeedsForFormula(f"no seed source can build {formula_label(counts)} ({reasons})")
        warnings.warn(
            f"seed source {source_name!r} cannot build {formula_label(counts)} ({reason}); "
            f"its share goes to {', '.join(remaining)}",
            stacklevel=3,
        )

    def _usable_weights(self, counts: Mapping[str, int]) -> dict[str, float]:
        key = tuple(sorted(counts.items()))
        usable = {n: w for n, w in self.weights.items() if key not in self._dropped.get(n, {})}
        if not usable:
            raise NoSeedsForFormula(f"no seed source can build {formula_label(counts)}")
        return usable

