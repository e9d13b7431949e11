"""User entry points: load a trained model, ``generate()`` structures, an ASE-GA start generator.

>>> from ase_unimat import generate
>>> structures = generate("Mg2SiO4", n=10, formula_units=2, seed=0)   # doctest: +SKIP

Sample ``i`` uses seed ``seed + i`` (or ``seeds[i]``), so ``generate(f, n=1, seed=s)`` reproduces
any one structure of a larger run, whatever the batch size.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers, chemical_symbols
from tqdm.auto import tqdm

from ase_unimat.core.formula import FormulaError, composition_grid, format_formula, parse_formula
from ase_unimat.core.geometry import atom_counts, shortest_distance
from ase_unimat.core.messages import one_line
from ase_unimat.core.periodic_table import cell_of, symbol_to_z
from ase_unimat.core.representation import encode
from ase_unimat.model.bundled import MODEL_FILE, resolve_model_path
from ase_unimat.model.config import from_dict

DEFAULT_SAMPLER = "ancestral"
#: Steps of ``generate()`` when none are given (the model config's ``default_steps`` is what the
#: search's UniMat seeds use). Chosen by CSP match and validity on mp_20/val at equal quality to the
#: former 50 (bench/results/sampler_speed_quality.json) and 2.5x faster (bench/results/sampling.json).
DEFAULT_STEPS = 20


def resolve_device(device: str | None = "auto"):
    """``"auto"``: CUDA when available, else CPU; otherwise the named torch device."""
    import torch  # torch takes seconds to import

    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_model(model=None, *, device: str = "auto"):
    """A :class:`~ase_unimat.model.diffusion.UniMatModel` in eval mode, from a path, a name or a model object.

    Parameters
    ----------
    model
        A ``UniMatModel`` (returned as is, moved to ``device``), a checkpoint file written by the
        trainer (its EMA weights are used), an exported ``model.pt``, a folder holding one, the name
        of a folder in ``models/``, or None for the default model ``models/unimat-mp-wide/``.
    device
        ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ...
    """

    from ase_unimat.model.checkpoint import CheckpointError, load_weights  # torch takes seconds to import
    from ase_unimat.model.diffusion import UniMatModel, build_model  # torch takes seconds to import

    dev = resolve_device(device)
    if isinstance(model, UniMatModel):
        return model.to(dev).eval()
    path = resolve_model_path(model)
    config, weights = load_weights(path)
    try:
        net = build_model(from_dict(config))
        net.load_state_dict(weights)
    except Exception as err:  # a config or weights this code cannot build (other version, edited file)
        raise CheckpointError(
            f"{path} does not fit this version's model ({type(err).__name__}: {one_line(err, limit=200, empty='')})"
        ) from err
    net.model_name = path.parent.name if path.name == MODEL_FILE else path.stem
    net.model_path = path
    return net.to(dev).eval()


def composition_for(model, counts: Mapping[str, int]) -> np.ndarray:
    """(9, 18) count grid of ``counts``, checked against what the model can generate.

    Refused (``FormulaError``): more than L atoms of one element, more atoms in all than the largest
    training cell (from the model's composition prior, when it has one), elements never seen.
    """
    if not counts:
        raise FormulaError("empty formula")
    grid = composition_grid(counts)
    too_many = {s: n for s, n in counts.items() if n > model.n_slots}
    if too_many:
        raise FormulaError(
            f"{format_formula(too_many)}: more than L = {model.n_slots} atoms of one element; "
            "use fewer formula units"
        )
    prior = getattr(model, "prior_compositions", None)
    if prior is not None and len(prior):
        largest = int(prior.sum(dim=(1, 2)).max())
        total = sum(counts.values())
        if total > largest:
            raise FormulaError(
                f"{format_formula(counts)}: {total} atoms, more than the {largest} of the largest cell this model "
                "was trained on; use fewer formula units"
            )
    seen = model.seen_elements.cpu().numpy()
    if seen.any():
        unseen = [s for s in counts if not seen[grid_cell(s)]]
        if unseen:
            raise FormulaError(f"element(s) {', '.join(unseen)} never appeared in this model's training data")
    return grid


def grid_cell(symbol: str) -> tuple[int, int]:
    return cell_of(symbol_to_z(symbol))


def _counts(formula: str | Mapping[str, int], formula_units: int) -> dict[str, int]:
    if isinstance(formula, Mapping):
        if isinstance(formula_units, bool) or int(formula_units) != formula_units or formula_units < 1:
            raise FormulaError(f"formula units must be a positive integer, got {formula_units!r}")
        counts = {}
        for symbol, n in formula.items():
            if isinstance(n, bool) or int(n) != n or n < 1:
                raise FormulaError(f"count of {symbol} must be a positive integer, got {n!r}")
            counts[str(symbol)] = int(n) * int(formula_units)
        composition_grid(counts)  # unknown symbols raise FormulaError
        return counts
    return parse_formula(formula, formula_units=formula_units)


def generate(
    formula: str | Mapping[str, int] | None = None,
    n: int = 10,
    *,
    elements: str | Sequence[str] | None = None,
    charge_balanced: bool = False,
    spacegroup: int | str | None = "default",
    formula_units: int = 1,
    model=None,
    guidance: float | None = None,
    steps: int | None = None,
    sampler: str = DEFAULT_SAMPLER,
    seed: int = 0,
    seeds: Sequence[int] | None = None,
    device: str = "auto",
    batch_size: int = 256,
    start: Sequence[Atoms] | None = None,
    strength: float = 1.0,
    keep_symmetry: bool = False,
    progress: bool = False,
    composition_prior=None,
    spacegroup_prior=None,
    min_distance: float | None = None,
    max_redraws: int = 3,
) -> list[Atoms]:
    """Sample ``n`` crystal structures of one composition, or de novo (no formula).

    Parameters
    ----------
    formula
        ``"Mg2SiO4"`` or ``{"Mg": 2, "Si": 1, "O": 4}``; None (or ``""``) samples de novo: each
        sample's composition is drawn from the training distribution
        (:mod:`ase_unimat.generation.compositions`).
    n
        Number of structures (ignored when ``seeds`` is given).
    elements
        De novo only: every sample holds exactly these elements (``"Li,Fe,P,O"``), in a
        stoichiometry drawn from the training cells with that many elements.
    charge_balanced
        De novo only: keep only SMACT charge-balanced compositions (CDVAE's composition validity).
    spacegroup
        Space-group models only: a number 1-230, ``"auto"`` (drawn per sample from the training
        data of the same stoichiometry, :mod:`ase_unimat.generation.spacegroups`), or None (no
        condition). ``"default"``: ``"auto"`` for a space-group model
        (:data:`ase_unimat.generation.plan.DEFAULT_SPACEGROUP`), None otherwise.
    formula_units
        Formula units per cell (with a formula).
    model
        Model path, name or object (see :func:`load_model`); None for the bundled default.
    guidance
        Classifier-free guidance weight w >= 0 (default from the model's config): the prediction is
        ``uncond + w (cond - uncond)``. The condition is the space group (an atom network trained
        with one; then every sample needs a space group) or the composition (dense network); a
        model with nothing to guide refuses w != 1.
    steps
        Sampler steps (default :data:`DEFAULT_STEPS`; with the ancestral sampler's corrector that is
        two network calls a step).
    sampler
        ``"ancestral"`` (reverse SDE with a Langevin corrector) or ``"ddim"`` (deterministic, one
        network call a step); see :mod:`ase_unimat.model.sampler` for their measured quality and speed.
    seed, seeds
        Sample ``i`` uses ``seeds[i]`` if given, else ``seed + i``; its composition and space
        group draws come from the same seed.
    device
        ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``.
    batch_size
        Structures sampled together (of any compositions).
    start, strength
        Optional starting structures, one per sample (same composition as ``formula``): each is
        noised to time ``strength`` in (0, 1] and denoised by the model from there (SDEdit); small
        ``strength`` keeps the start's arrangement; ``strength = 1`` forgets almost all of it.
    keep_symmetry
        With ``start``: every sampler step keeps sample ``i``'s coordinates invariant under the
        space-group operations of ``start[i]`` (:mod:`ase_unimat.model.symmetry_constraint`), so
        the model places the atoms on the start's Wyckoff positions and chooses their free
        parameters and the cell. A start whose operations do not map its atoms onto each other is
        sampled free (``info["symmetry_kept"]`` says which).
    progress
        Show a progress bar over the structures (``unimat-sample`` does unless ``--quiet``).
    composition_prior, spacegroup_prior
        Prebuilt :class:`~ase_unimat.generation.compositions.CompositionPrior` /
        :class:`~ase_unimat.generation.spacegroups.SpacegroupPrior` (else built from the model's data).
    min_distance, max_redraws
        When ``min_distance`` (Angstrom) is given, a sample with two atoms closer than it (periodic
        images included) is drawn again, up to ``max_redraws`` times, with the same composition,
        space group and start but fresh noise (seed ``redraw_seed(seeds[i], attempt)``); its
        ``info["redraws"]`` counts the draws it took, and a sample still too close after the last
        one is returned with ``info["too_close"] = True``. None (the default) returns every sample
        as drawn.

    Returns
    -------
    list of ase.Atoms
        ``info`` holds ``model``, ``seed``, ``sampler``, ``steps``, ``guidance``, ``source="unimat"``,
        ``composition_source`` (``"formula"``, ``"prior"`` or ``"elements"``, with the draw's
        details), ``spacegroup`` and ``spacegroup_source`` when conditioned on one (and
        ``strength`` when started from ``start``).
    """
    import torch  # torch takes seconds to import

    from ase_unimat.generation.compositions import parse_elements
    from ase_unimat.generation.plan import plan_samples
    from ase_unimat.model.sampler import get_sampler, to_atoms  # torch takes seconds to import
    from ase_unimat.model.symmetry_constraint import SymmetryConstraint

    sample = get_sampler(sampler)
    if seeds is None:
        if isinstance(n, bool) or int(n) != n or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        seeds = [int(seed) + i for i in range(int(n))]
    seeds = [int(s) for s in seeds]
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    de_novo = formula is None or (isinstance(formula, str) and not formula.strip())
    if not de_novo and elements is not None:
        raise FormulaError("give a formula or elements, not both")
    if de_novo and (start is not None or formula_units != 1):
        raise FormulaError("start= and formula_units need a formula")
    counts = None if de_novo else _counts(formula, formula_units)
    symbols = None if elements is None else parse_elements(elements)
    net = load_model(model, device=device)
    if counts is not None:
        composition_for(net, counts)
    cfg = net.config.diffusion
    steps = DEFAULT_STEPS if steps is None else int(steps)
    guidance = cfg.default_guidance if guidance is None else float(guidance)
    plans = plan_samples(net, seeds, counts=counts, elements=symbols, charge_balanced=charge_balanced,
                         spacegroup=spacegroup, composition_prior=composition_prior,
                         spacegroup_prior=spacegroup_prior)  # fmt: skip
    if guidance != 1.0 and not net.guidable:
        raise ValueError("this model has no condition to guide (an atom network without a space-group condition): "
                         "guidance must be 1")
    if guidance != 1.0 and net.spacegroup_conditioned and any(p.spacegroup == 0 for p in plans):
        raise ValueError("guidance != 1 acts on the space group: give spacegroup= a number or 'auto'")
    grids = {}
    for plan in plans:
        key = tuple(sorted(plan.counts.items()))
        if key not in grids:
            grids[key] = composition_for(net, plan.counts)
    dev = next(net.parameters()).device
    name = getattr(net, "model_name", net.config.name)
    compositions = torch.as_tensor(np.stack([grids[tuple(sorted(p.counts.items()))] for p in plans]),
                                   dtype=torch.float32)  # fmt: skip
    starts = None if start is None else _encode_starts(start, counts, len(seeds), net.n_slots)
    extra = {} if start is None else {"strength": float(strength)}
    if keep_symmetry and start is None:
        raise ValueError("keep_symmetry needs start= structures whose symmetry to keep")
    constraint = _symmetry_constraint(start, net.n_slots) if keep_symmetry else None
    if min_distance is not None and not (math.isfinite(min_distance) and min_distance > 0):
        raise ValueError(f"min_distance must be a positive number of Angstrom, got {min_distance}")

    def draw(indices: list[int], noise_seeds: list[int]) -> list[Atoms]:
        """Samples ``indices`` (positions in ``seeds``) drawn with ``noise_seeds``, in batches."""
        out: list[Atoms] = []
        for first in range(0, len(indices), batch_size):
            idx = indices[first : first + batch_size]
            chunk = noise_seeds[first : first + batch_size]
            chunk_plans = [plans[i] for i in idx]
            begin = None if starts is None else tuple(torch.as_tensor(x[idx]) for x in starts)
            condition = [p.spacegroup for p in chunk_plans] if net.spacegroup_conditioned else None
            kept = None if constraint is None else SymmetryConstraint([constraint.samples[i] for i in idx])
            coords, lattice = sample(
                net, compositions[idx].to(dev), seeds=chunk, steps=steps, guidance=guidance,
                device=dev, start=begin, strength=strength, spacegroup=condition,
                **({} if kept is None else {"constraint": kept}),
            )  # fmt: skip
            info = [
                {"model": name, "seed": seeds[i], "sampler": sampler, "steps": steps, "guidance": guidance,
                 "source": "unimat", **p.info, **extra}
                for i, p in zip(idx, chunk_plans, strict=True)
            ]  # fmt: skip
            if kept is not None:
                for item, symmetry in zip(info, kept.samples, strict=True):
                    item["symmetry_kept"] = symmetry is not None
            out.extend(to_atoms(coords, lattice, info=info))
            bar.update(len(idx))
        return out

    bar = tqdm(total=len(seeds), unit="structure", desc=f"sampling {format_formula(counts) if counts else 'de novo'}", disable=not progress)
    everyone = list(range(len(seeds)))
    structures = draw(everyone, seeds)
    if min_distance is not None:

        def too_close(i: int) -> bool:
            return shortest_distance(structures[i], exact_below=min_distance) < min_distance

        close = [i for i in everyone if too_close(i)]  # each sample checked once, a redrawn one once per draw
        for attempt in range(1, int(max_redraws) + 1):
            if not close:
                break
            bar.total += len(close)
            for i, atoms in zip(close, draw(close, [redraw_seed(seeds[i], attempt) for i in close]), strict=True):
                atoms.info["redraws"] = attempt
                structures[i] = atoms
            close = [i for i in close if too_close(i)]
        for i in close:
            structures[i].info["too_close"] = True
    bar.close()
    return structures


def redraw_seed(seed: int, attempt: int) -> int:
    """The noise seed of redraw ``attempt`` (1, 2, ...) of the sample seeded ``seed`` (a 63-bit integer)."""
    state = np.random.SeedSequence([int(seed) & (2**63 - 1), int(attempt), 0x5EED]).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 31 | int(state[1]) >> 1


def _symmetry_constraint(start: Sequence[Atoms], n_slots: int):
    """The :class:`~ase_unimat.model.symmetry_constraint.SymmetryConstraint` of the start structures."""
    from ase_unimat.core.symmetry_ops import SymmetryError
    from ase_unimat.model.symmetry_constraint import SampleSymmetry, SymmetryConstraint

    samples = []
    for atoms in start:
        try:
            samples.append(SampleSymmetry.of(atoms, n_slots=n_slots))
        except SymmetryError:
            samples.append(None)
    return SymmetryConstraint(samples)


def _encode_starts(
    start: Sequence[Atoms], counts: Mapping[str, int], n: int, n_slots: int
) -> tuple[np.ndarray, np.ndarray]:
    """(n, L, 9, 18, 3) coords and (n, 6) lattices of the starting structures, checked against ``counts``."""

    start = list(start)
    if len(start) != n:
        raise ValueError(f"{len(start)} starting structures for {n} samples")
    coords, lattices = [], []
    for i, atoms in enumerate(start):
        have = atom_counts(atoms)
        if have != dict(counts):
            raise FormulaError(f"starting structure {i} is {format_formula(have)}, not {format_formula(counts)}")
        c, lat = encode(atoms, n_slots=n_slots)
        coords.append(c)
        lattices.append(lat)
    return np.stack(coords), np.stack(lattices).astype(np.float32)


class UniMatStartGenerator:
    """Drop-in for ``ase_ga.startgenerator.StartGenerator`` that proposes UniMat structures.

    ``StartGenerator(slab, blocks, blmin, number_of_variable_cell_vectors=3, ...)`` scripts work
    with this class in place of it: ``get_new_candidate()`` returns one new periodic Atoms per call.
    ``slab`` must hold no atoms (bulk crystals); its ``pbc`` is kept, and when
    ``number_of_variable_cell_vectors`` is 0 the slab's cell replaces the generated one (the
    fractional coordinates are kept). ``blocks`` are single atoms: ``[("Ag", 24)]``, ``["Ag"] * 24``
    or atomic numbers. With ``blmin`` (``{(Z1, Z2): distance}``), candidates with two atoms closer
    than that are skipped (up to ``maxiter`` tries). Candidate ``k`` uses seed ``seed + k``.
    """

    def __init__(
        self,
        slab: Atoms,
        blocks,
        blmin: Mapping[tuple[int, int], float] | None = None,
        number_of_variable_cell_vectors: int = 3,
        *,
        model=None,
        guidance: float | None = None,
        steps: int | None = None,
        sampler: str = DEFAULT_SAMPLER,
        seed: int = 0,
        device: str = "auto",
        batch_size: int = 16,
    ) -> None:
        if len(slab) > 0:
            raise ValueError("UniMatStartGenerator builds bulk crystals: the slab must hold no atoms")
        if number_of_variable_cell_vectors not in (0, 3):
            raise ValueError("number_of_variable_cell_vectors must be 3 (generated cell) or 0 (slab's cell)")
        if number_of_variable_cell_vectors == 0 and slab.cell.rank != 3:
            raise ValueError("number_of_variable_cell_vectors=0 needs a slab with a full 3-D cell")
        self.slab = slab
        self.counts = _block_counts(blocks)
        self.blmin = dict(blmin or {})
        self.fixed_cell = number_of_variable_cell_vectors == 0
        self.model = load_model(model, device=device)
        composition_for(self.model, self.counts)
        self.options = {"guidance": guidance, "steps": steps, "sampler": sampler, "device": device}
        self.batch_size = batch_size
        self.next_seed = int(seed)
        self._queue: list[Atoms] = []

    def get_new_candidate(self, maxiter: int | None = None) -> Atoms:
        """The next UniMat structure (skipping ones that violate ``blmin``); error after ``maxiter`` tries."""
        tries = 0
        while maxiter is None or tries < maxiter:
            if not self._queue:
                seeds = range(self.next_seed, self.next_seed + self.batch_size)
                self._queue = generate(self.counts, seeds=seeds, model=self.model, batch_size=self.batch_size,
                                       **self.options)
                self.next_seed += self.batch_size
            atoms = self._queue.pop(0)
            tries += 1
            if self.fixed_cell:
                atoms.set_cell(self.slab.cell, scale_atoms=True)
            atoms.pbc = self.slab.pbc
            if not self._too_close(atoms):
                return atoms
        raise RuntimeError(f"no candidate satisfied blmin in {maxiter} tries")

    def _too_close(self, atoms: Atoms) -> bool:
        if not self.blmin or len(atoms) < 2:
            return False
        dist = atoms.get_all_distances(mic=True)
        numbers = atoms.numbers
        for i in range(len(atoms)):
            for j in range(i + 1, len(atoms)):
                pair = (int(numbers[i]), int(numbers[j]))
                limit = self.blmin.get(pair, self.blmin.get(pair[::-1], 0.0))
                if dist[i, j] < limit:
                    return True
        return False


def _block_counts(blocks) -> dict[str, int]:
    """Element counts of StartGenerator-style blocks (single atoms only)."""

    counts: dict[str, int] = {}
    for block in blocks:
        item, number = block if isinstance(block, tuple) else (block, 1)
        if isinstance(item, (int, np.integer)):
            symbol = chemical_symbols[int(item)]
        elif isinstance(item, str) and item in atomic_numbers:
            symbol = item
        else:
            raise ValueError(f"block {block!r}: only single atoms (symbol or atomic number) are supported")
        counts[symbol] = counts.get(symbol, 0) + int(number)
    if not counts:
        raise FormulaError("no blocks: nothing to generate")
    return counts
