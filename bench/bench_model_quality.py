"""Model quality on mp_20/test: CSP match rate, validity, coverage and CHGNet stability of the default model.

Run:  python -m bench model_quality [--quick]   (the shipped models/unimat-mp20; from Python:
      ``run(quick=False, out_dir=..., model="path/to/model.pt")`` or :func:`run_model_quality`)

Protocol (issue 7, with the instruments of ``ase_unimat.evaluation.metrics`` and ``ase_unimat.evaluation.sun``):

1. **CSP**. Each test structure's cell composition is sampled by the model (the sampler's own
   defaults: ancestral, the model's steps and guidance), all compositions of a batch together (the
   sampler draws each sample's noise from its own seed, so a structure equals
   ``generate(composition, seeds=[s])``). Sample ``j`` of test structure ``i`` uses seed
   ``seed * 1_000_000 + i * 100 + j``. One sample for every structure gives match@1 / RMSE@1; a
   seeded subset gets ``k`` samples (the first is the k = 1 sample) for match@k / RMSE@k
   (``metrics.csp_match``: StructureMatcher stol 0.5, angle_tol 10, ltol 0.3).
2. **Generative metrics** (``metrics.generation_metrics``, mp_20 coverage cutoffs) of the k = 1
   samples against the test set. The compositions are given (CSP setting), so composition validity
   and the element-count distance describe the test set more than the model.
3. **Stability** (``sun.stability_report``): a seeded subset of the k = 1 samples is relaxed
   (CHGNet, FIRE + FrechetCellFilter, fmax 0.05, <= 500 steps, 2 worker processes with one thread
   each) and placed on a hull of competing phases from the shared data (mp_20 train + extra MP,
   lowest-DFT-energy polymorph per formula) relaxed the same way -- only the chemical systems of the
   subset (that is how ``stability`` builds hulls), cached in ``bench/.cache/model_quality/``.
   Elemental references come from the data at any size, else from ``stability``'s fallbacks
   (boxed diatomic molecules, measured or approximate crystals), which exist for elements 1-94; a
   sample with an element that still has none would be passed over, and the result says how many
   were. Uniqueness within the subset; novelty against the model's training set
   (``models/<model>/reference.h5``); S.U.N. = stable (E_hull <= 0.1 eV/atom), unique and novel.

``--quick``: 40 test structures (all 40 sampled k times), coverage against those 40 only, 8
stability samples; otherwise the same protocol.
Outputs: ``<out>/model_quality[_quick].json`` (by the runner), ``.md`` (table) and ``.png``
(E_hull histogram).
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ase_unimat.core.geometry import atom_counts

DEFAULT_CACHE_DIR = Path(__file__).resolve().parent / ".cache" / "model_quality"
TEST_CSV = "mp_20/test.csv.gz"  # under the shared data folder
TEST_H5_VARIABLE = "UNIMAT_TEST_H5"  # a prebuilt HDF5 of mp_20/test used instead when set
MAX_K = 100  # samples per structure the seed formula leaves room for


@dataclass(frozen=True)
class QualitySettings:
    """What one model-quality run does (see the module docstring)."""

    n_csp: int | None = None  # test structures sampled once (None: all)
    n_topk: int = 300  # of those, structures sampled k times
    k: int = 4
    n_stability: int = 40  # k = 1 samples relaxed and placed on a hull
    seed: int = 0
    sampler: str = "ancestral"
    steps: int | None = None  # None: the model's default
    guidance: float | None = None  # None: the model's default
    batch_size: int = 64
    threads: int = 1  # torch threads for sampling (the relaxation workers use one each)
    coverage_reference: str = "all"  # "all" test structures or only the "sampled" ones
    calculator: str = "chgnet"
    workers: int = 2
    fmax: float = 0.05
    max_steps: int = 500
    hull_max_dft_e_above_hull: float | None = None  # drop compounds above this DFT e_hull (elements, NaN kept)
    stable_threshold: float = 0.1  # eV/atom, for the S.U.N. rate

    def __post_init__(self) -> None:
        if self.n_csp is not None and self.n_csp < 1:
            raise ValueError(f"n_csp must be >= 1 or None, got {self.n_csp}")
        if not 1 <= self.k <= MAX_K:
            raise ValueError(f"k must be in 1..{MAX_K}, got {self.k}")
        if min(self.n_topk, self.n_stability) < 0 or self.batch_size < 1 or self.threads < 1 or self.workers < 1:
            raise ValueError("n_topk and n_stability must be >= 0; batch_size, threads and workers >= 1")
        if self.coverage_reference not in ("all", "sampled"):
            raise ValueError(f"coverage_reference must be 'all' or 'sampled', got {self.coverage_reference!r}")


DEFAULT = QualitySettings()
QUICK = QualitySettings(n_csp=40, n_topk=40, n_stability=8, coverage_reference="sampled")


def run(*, quick: bool, out_dir: Path, model=None) -> dict:
    """Default model on mp_20/test: CSP match@1/@4, validity, coverage, CHGNet E_hull and S.U.N."""
    stem = "model_quality_quick" if quick else "model_quality"
    return run_model_quality(QUICK if quick else DEFAULT, out_dir=Path(out_dir), model=model, stem=stem)


# ---------------------------------------------------------------------------------------------- data


def load_test_set(path: Path | str | None = None) -> tuple[list[Any], str]:
    """The mp_20 test structures as ``ase.Atoms`` (``info["material_id"]``) and where they came from.

    ``path`` (a CSV or the converter's HDF5), else ``$UNIMAT_TEST_H5``, else
    ``<shared data>/mp_20/test.csv.gz`` read with the converter's readers.
    """
    from ase_unimat.evaluation.reference import default_data_dir

    path = Path(path) if path is not None else None
    if path is None and os.environ.get(TEST_H5_VARIABLE):
        path = Path(os.environ[TEST_H5_VARIABLE])
    path = path or default_data_dir() / TEST_CSV
    if not path.exists():
        raise FileNotFoundError(f"mp_20 test set {path} not found (set UNIMAT_SHARED_DATA or {TEST_H5_VARIABLE})")
    if path.suffix in (".h5", ".hdf5"):
        from ase_unimat.data.hdf5 import read_atoms

        return read_atoms(path), str(path)
    from pymatgen.io.ase import AseAtomsAdaptor

    from ase_unimat.data.readers import RecordError, iter_records

    structures = []
    for record in iter_records(path):
        item = record.structure_or_error
        if isinstance(item, RecordError):
            raise ValueError(f"{path}: record {record.record_id} cannot be read: {item}")
        atoms = item if hasattr(item, "get_chemical_symbols") else AseAtomsAdaptor.get_atoms(item)
        atoms.info["material_id"] = record.record_id
        structures.append(atoms)
    return structures, str(path)


def seeded_subset(candidates: Sequence[int], n: int | None, *, seed: int, salt: int) -> list[int]:
    """``n`` of ``candidates`` drawn without replacement (all when ``n`` is None or too large), sorted."""
    import numpy as np

    candidates = list(candidates)
    if n is None or n >= len(candidates):
        return candidates
    rng = np.random.default_rng([seed, salt])
    return sorted(candidates[i] for i in rng.choice(len(candidates), size=n, replace=False))


def sample_seed(seed: int, index: int, j: int) -> int:
    """Seed of sample ``j`` of test structure ``index``."""
    return seed * 1_000_000 + index * MAX_K + j


# ------------------------------------------------------------------------------------------ sampling


def sample_compositions(
    net: Any,
    jobs: Sequence[tuple[dict[str, int], int, dict[str, Any]]],
    *,
    settings: QualitySettings,
) -> tuple[list[Any], list[str]]:
    """Sample one structure per ``(counts, seed, info)`` job, compositions batched together.

    Returns the structures (``None`` where the composition cannot be sampled or decoded) and the
    reasons for those ``None``. Jobs are sorted by atom count for batching; the result keeps their order.
    """
    import numpy as np
    import torch

    from ase_unimat.core.formula import FormulaError
    from ase_unimat.generation import composition_for
    from ase_unimat.model.sampler import get_sampler, to_atoms

    sample = get_sampler(settings.sampler)
    cfg = net.config.diffusion
    steps = cfg.default_steps if settings.steps is None else settings.steps
    guidance = cfg.default_guidance if settings.guidance is None else settings.guidance
    name = getattr(net, "model_name", net.config.name)
    out: list[Any] = [None] * len(jobs)
    problems: list[str] = []
    grids = {}
    for i, (counts, _, _) in enumerate(jobs):
        try:
            grids[i] = composition_for(net, counts)
        except FormulaError as err:
            problems.append(f"job {i}: {err}")
    order = sorted(grids, key=lambda i: (sum(jobs[i][0].values()), i))
    for first in range(0, len(order), settings.batch_size):
        chunk = order[first : first + settings.batch_size]
        composition = torch.as_tensor(np.stack([grids[i] for i in chunk]), dtype=torch.float32)  # (B, 9, 18)
        coords, lattice = sample(net, composition, seeds=[jobs[i][1] for i in chunk], steps=steps, guidance=guidance,
                                 device="cpu")  # (B, L, 9, 18, 3), (B, 6)  # fmt: skip
        for b, i in enumerate(chunk):
            info = {"model": name, "seed": jobs[i][1], "sampler": settings.sampler, "steps": steps,
                    "guidance": guidance, "source": "unimat", **jobs[i][2]}  # fmt: skip
            try:
                out[i] = to_atoms(coords[b : b + 1], lattice[b : b + 1], info=info)[0]
            except ValueError as err:
                problems.append(f"job {i}: {err}")
    return out, problems


def csp_samples(
    net: Any, references: Sequence[Any], csp_indices: Sequence[int], topk_indices: Sequence[int], *,
    settings: QualitySettings, say: Callable[[str], None],
) -> tuple[dict[int, list[Any]], dict[str, Any]]:  # fmt: skip
    """Sample 1 structure per ``csp_indices`` reference and ``k - 1`` more per ``topk_indices`` one.

    Returns ``{reference index: [samples, first = the k = 1 sample]}`` (failed samples dropped) and
    wall times / failure notes.
    """
    def jobs_for(indices: Sequence[int], js: range) -> list[tuple[dict[str, int], int, dict[str, Any]]]:
        return [(atom_counts(references[i]), sample_seed(settings.seed, i, j),
                 {"material_id": references[i].info.get("material_id", str(i)), "test_index": i, "sample": j})
                for i in indices for j in js]  # fmt: skip

    timing: dict[str, Any] = {}
    start = time.perf_counter()
    first, problems = sample_compositions(net, jobs_for(csp_indices, range(1)), settings=settings)
    timing["sample_k1"] = round(time.perf_counter() - start, 1)
    say(f"sampled {len(csp_indices)} structures (k = 1) in {timing['sample_k1']} s")
    samples = {i: [a] if a is not None else [] for i, a in zip(csp_indices, first, strict=True)}
    start = time.perf_counter()
    extra_jobs = jobs_for(topk_indices, range(1, settings.k))
    more, more_problems = sample_compositions(net, extra_jobs, settings=settings) if extra_jobs else ([], [])
    timing["sample_topk_extra"] = round(time.perf_counter() - start, 1)
    say(f"sampled {len(extra_jobs)} more for k = {settings.k} in {timing['sample_topk_extra']} s")
    for (_, _, info), atoms in zip(extra_jobs, more, strict=True):
        if atoms is not None and samples[info["test_index"]]:
            samples[info["test_index"]].append(atoms)
    timing["failed_samples"] = problems + more_problems
    return samples, timing


# ------------------------------------------------------------------------------------------- scoring


def csp_scores(
    samples: dict[int, list[Any]], references: Sequence[Any], topk_indices: Sequence[int], *, k: int
) -> dict[str, Any]:
    """match@1 / RMSE@1 over every sampled reference, match@k / RMSE@k over ``topk_indices``."""
    from ase_unimat.evaluation.metrics import CSP_MATCHER, csp_match

    indices = sorted(samples)
    at_1 = csp_match([samples[i][:1] for i in indices], [references[i] for i in indices], k=1)
    out: dict[str, Any] = {"matcher": dict(CSP_MATCHER), "n": at_1["n"], "match_rate_at_1": at_1["match_rate_at_1"],
                           "rmse_at_1": at_1["rmse_at_1"]}  # fmt: skip
    if topk_indices:
        at_k = csp_match([samples[i][:k] for i in topk_indices], [references[i] for i in topk_indices], k=k)
        out.update({"k": k, "n_topk": at_k["n"], "match_rate_at_1_topk_subset": at_k["match_rate_at_1"],
                    f"match_rate_at_{k}": at_k["match_rate_at_k"], f"rmse_at_{k}": at_k["rmse_at_k"]})  # fmt: skip
    return out


def reference_fingerprints(references: Sequence[Any], cache_dir: Path | None) -> Any:
    """``metrics.fingerprints`` of ``references``, read from / written to ``cache_dir`` (keyed by content)."""
    import numpy as np

    from ase_unimat.evaluation.metrics import Fingerprints, fingerprints

    digest = hashlib.sha1()
    for atoms in references:
        digest.update(np.asarray(atoms.numbers, dtype=np.int64).tobytes())
        digest.update(np.round(np.asarray(atoms.cell.array, dtype=np.float64), 6).tobytes())
        digest.update(np.round(np.asarray(atoms.get_scaled_positions(), dtype=np.float64), 6).tobytes())
    path = None if cache_dir is None else Path(cache_dir) / f"fingerprints-{digest.hexdigest()[:16]}.npz"
    if path is not None and path.exists():
        data = np.load(path)
        return Fingerprints(structure=data["structure"], composition=data["composition"])
    result = fingerprints(list(references))
    if path is not None:
        from ase_unimat.core.atomic import atomic_write

        atomic_write(path, lambda handle: np.savez(handle, structure=result.structure, composition=result.composition))
    return result


def generative_scores(
    generated: Sequence[Any], references: Sequence[Any], *, cache_dir: Path | None
) -> dict[str, Any]:
    """``metrics.generation_metrics`` (mp_20 cutoffs) of ``generated`` against ``references``."""
    from ase_unimat.evaluation.metrics import generation_metrics

    ref_fp = reference_fingerprints(references, cache_dir)
    out = generation_metrics(list(generated), list(references), dataset="mp_20", reference_fingerprints=ref_fp)
    out["note"] = ("compositions are given (CSP setting): each generated structure has its test structure's "
                   "composition, so comp_valid and wdist_num_elems describe the test set, not the model")  # fmt: skip
    return out


# ----------------------------------------------------------------------------------------- stability


def unreferenced_elements(elements: Iterable[str], hull_records: Sequence[Any]) -> list[str]:
    """Elements with neither an elemental phase in ``hull_records`` nor an ASE reference state: no hull
    containing them can be built by ``stability`` (it raises)."""
    from ase_unimat.evaluation.elements import elemental_fallbacks

    have = {next(iter(r.elements)) for r in hull_records if len(r.elements) == 1}
    missing = []
    for element in sorted(set(elements) - have):
        try:
            elemental_fallbacks([], [element])
        except ValueError:
            missing.append(element)
    return missing


def training_records(training: Sequence[Any], formulas: set[str]) -> list[Any]:
    """``reference_data.ReferenceRecord`` s of the training structures whose reduced formula is in ``formulas``
    (novelty compares only structures of the same reduced formula)."""
    import warnings

    from pymatgen.core import Composition
    from pymatgen.io.ase import AseAtomsAdaptor

    from ase_unimat.evaluation.reference import ReferenceRecord

    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, atoms in enumerate(training):
            counts = atom_counts(atoms)
            if Composition(counts).reduced_formula not in formulas:
                continue
            cif = AseAtomsAdaptor.get_structure(atoms).to(fmt="cif")
            material_id = str(atoms.info.get("material_id", f"train-{i}"))
            out.append(ReferenceRecord(material_id, "training", counts, math.nan, cif))
    return out


def stability_scores(
    samples: Sequence[tuple[int, Any]], *, settings: QualitySettings, hull_records: Sequence[Any],
    training: Sequence[Any], cache_dir: Path, say: Callable[[str], None], training_label: str = "the given training set",
) -> dict[str, Any]:  # fmt: skip
    """Relax a seeded subset of ``(test index, sample)`` pairs and report E_hull, uniqueness, novelty, S.U.N.

    The subset is drawn from the samples whose hull is defined; a sample whose chemical system has
    an elemental phase that fails to relax is replaced by the next candidate.
    """
    import numpy as np
    from pymatgen.core import Composition

    from ase_unimat.evaluation.elements import elemental_fallbacks
    from ase_unimat.evaluation.hull import EnergyCache, phase_energies
    from ase_unimat.evaluation.reference import competing_phases
    from ase_unimat.evaluation.sun import stability_report
    from ase_unimat.search.relax import RelaxSettings

    limit = settings.hull_max_dft_e_above_hull
    hull = [r for r in hull_records  # elements always kept; NaN (unknown) kept
            if limit is None or len(r.elements) == 1 or not r.e_above_hull > limit]  # fmt: skip
    unreferenced = set(unreferenced_elements({e for _, a in samples for e in a.get_chemical_symbols()}, hull))
    undefined = [i for i, a in samples if unreferenced & set(a.get_chemical_symbols())]
    relax_settings = RelaxSettings(fmax=settings.fmax, max_steps=settings.max_steps)
    options = {"threads": 1} if settings.calculator == "chgnet" else None
    cache = EnergyCache(Path(cache_dir) / "hull_energies.json")
    order = [samples[i] for i in np.random.default_rng([settings.seed, 3]).permutation(len(samples))]
    phases_start = time.perf_counter()
    passed_over: dict[str, int] = {}  # element -> candidates passed over for it
    failed_elements: dict[str, int] = {}  # element -> candidates dropped because its phase failed to relax
    members: dict[frozenset[str], list[str]] = {}  # chemical system -> its phase ids
    phases: dict[str, Any] = {}  # phase id -> ReferenceRecord or (id, Atoms)
    energies: dict[str, Any] = {}  # phase id -> PhaseEnergy
    kept: list[tuple[int, Any]] = []
    position, n_passed = 0, 0
    while len(kept) < settings.n_stability and position < len(order):
        batch = []  # candidates with a defined hull, as many as still needed
        while len(kept) + len(batch) < settings.n_stability and position < len(order):
            index, atoms = order[position]
            position += 1
            missing = unreferenced & set(atoms.get_chemical_symbols())
            for element in missing:
                passed_over[element] = passed_over.get(element, 0) + 1
            n_passed += bool(missing)
            if not missing:
                batch.append((index, atoms))
        new = {}
        for chemsys in sorted({frozenset(a.get_chemical_symbols()) for _, a in batch} - set(members), key=sorted):
            inside = competing_phases(hull, chemsys)
            members[chemsys] = []
            for phase in [*inside, *elemental_fallbacks(inside, chemsys)]:
                key = phase.material_id if hasattr(phase, "material_id") else phase[0]
                members[chemsys].append(key)
                if key not in phases:
                    new[key] = phases[key] = phase
        say(f"stability: {len(batch)} samples, {len(new)} new competing phases ({len(cache)} energies cached)")
        got = phase_energies(list(new.values()), settings.calculator, relax_settings, cache=cache,
                             calculator_options=options, workers=settings.workers)  # fmt: skip
        energies.update(zip(new, got, strict=True))
        for index, atoms in batch:  # every element needs a relaxed elemental phase
            chemsys = frozenset(atoms.get_chemical_symbols())
            have = {next(iter(energies[k].counts)) for k in members[chemsys]
                    if len(energies[k].counts) == 1 and math.isfinite(energies[k].energy)}  # fmt: skip
            for element in sorted(chemsys - have):
                failed_elements[element] = failed_elements.get(element, 0) + 1
            if chemsys <= have:
                kept.append((index, atoms))
    systems = {frozenset(a.get_chemical_symbols()) for _, a in kept}
    phases_s = time.perf_counter() - phases_start
    if not kept:
        return {"skipped": "no sample has a defined hull", "unreferenced_elements": sorted(unreferenced)}
    formulas = {Composition(atom_counts(a)).reduced_formula for _, a in kept}
    start = time.perf_counter()
    report = stability_report([a for _, a in kept], calculator=settings.calculator, cache=cache, hull_records=hull,
                              training_records=training_records(training, formulas), settings=relax_settings,
                              calculator_options=options, per_formula=1, stable_threshold=settings.stable_threshold,
                              workers=settings.workers, progress=say)  # fmt: skip
    report_s = time.perf_counter() - start
    e_hull = np.asarray(report["e_hull"], dtype=float)
    finite = e_hull[np.isfinite(e_hull)]
    report.update({
        "test_indices": [i for i, _ in kept],
        "material_ids": [a.info.get("material_id") for _, a in kept],
        "e_hull_median": float(np.median(finite)) if finite.size else math.nan,
        "e_hull_quartiles": [float(np.quantile(finite, q)) for q in (0.25, 0.75)] if finite.size else [],
        "hull_undefined": {
            "unreferenced_elements": sorted(unreferenced),
            "share_of_all_samples": len(undefined) / len(samples),
            "samples_passed_over": n_passed,
            "passed_over_by_element": dict(sorted(passed_over.items())),
            "elemental_phase_failed_to_relax": failed_elements,
        },
        "candidates": len(samples),
        "hull": {"sources": "mp_20/train + extra_mp (reference_data.HULL_SOURCES), <= 20 atoms; elements at any size or fallbacks",
                 "per_formula": 1, "max_dft_e_above_hull": limit, "chemical_systems": len(systems),
                 "phases_relaxed": len(phases), "restricted_to": "the chemical systems of the relaxed samples"},
        "relax": {"calculator": settings.calculator, "calculator_options": options, "workers": settings.workers,
                  **asdict(relax_settings)},
        "novelty_reference": training_label,
        "wall_s": {"competing_phases": round(phases_s, 1), "samples_and_hull": round(report_s, 1)},
    })  # fmt: skip
    return report


# ------------------------------------------------------------------------------------------------ run


def model_identity(model: Any) -> dict[str, Any]:
    """Name, file and training step of ``model`` (a path, a name, None or a loaded model)."""
    import torch

    from ase_unimat.model.bundled import resolve_model_path
    from ase_unimat.model.diffusion import UniMatModel

    if isinstance(model, UniMatModel):
        return {"name": getattr(model, "model_name", model.config.name), "path": None, "step": None}
    path = resolve_model_path(model)
    state = torch.load(path, map_location="cpu", weights_only=True)
    name = path.parent.name if path.name == "model.pt" else path.stem
    return {"name": name, "path": str(path), "step": state.get("step")}


def default_training(model: Any) -> list[Any]:
    """The model folder's ``reference.h5`` (its training structures) as ``ase.Atoms``."""
    from ase_unimat.data.hdf5 import read_atoms
    from ase_unimat.model.bundled import resolve_model_path

    path = resolve_model_path(model).parent / "reference.h5"
    if not path.exists():
        raise FileNotFoundError(f"no training reference {path}: pass training= structures for novelty")
    return read_atoms(path)


def run_model_quality(
    settings: QualitySettings,
    *,
    out_dir: Path,
    model: Any = None,
    references: Sequence[Any] | None = None,
    hull_records: Sequence[Any] | None = None,
    training: Sequence[Any] | None = None,
    cache_dir: Path | None = DEFAULT_CACHE_DIR,
    stem: str = "model_quality",
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Sample, score and write ``<out_dir>/<stem>.md`` and ``.png``; returns the JSON-ready result.

    Parameters
    ----------
    settings
        Sizes, seeds, sampler and relaxation settings (:data:`DEFAULT`, :data:`QUICK`).
    model
        Model path, name or object (None: the shipped default).
    references
        Test structures (default: mp_20/test via :func:`load_test_set`).
    hull_records
        Competing phases (default: ``reference_data.load_reference_records()`` of ``HULL_SOURCES``).
    training
        Training structures for novelty (default: the model folder's ``reference.h5``).
    cache_dir
        Hull energies and reference fingerprints (``None``: fingerprints uncached, hull energies in
        ``out_dir``).
    """
    import numpy as np
    import torch

    from ase_unimat.generation import load_model

    wall: dict[str, float] = {}
    start = time.perf_counter()
    torch.set_num_threads(settings.threads)
    identity = model_identity(model)
    net = load_model(model, device="cpu")
    source = "given"
    if references is None:
        references, source = load_test_set()
    references = list(references)
    wall["load"] = round(time.perf_counter() - start, 1)
    csp_indices = seeded_subset(range(len(references)), settings.n_csp, seed=settings.seed, salt=1)
    topk_indices = seeded_subset(csp_indices, settings.n_topk, seed=settings.seed, salt=2) if settings.k > 1 else []
    samples, sampling = csp_samples(net, references, csp_indices, topk_indices, settings=settings, say=say)
    wall.update({k: v for k, v in sampling.items() if k.startswith("sample_")})
    start = time.perf_counter()
    csp = csp_scores(samples, references, topk_indices, k=settings.k)
    wall["csp_match"] = round(time.perf_counter() - start, 1)
    say(f"CSP: {csp}")
    first = [(i, samples[i][0]) for i in csp_indices if samples[i]]
    start = time.perf_counter()
    coverage_refs = references if settings.coverage_reference == "all" else [references[i] for i in csp_indices]
    generation = generative_scores([a for _, a in first], coverage_refs, cache_dir=cache_dir)
    generation["n_reference"] = len(coverage_refs)
    generation["reference"] = "all test structures" if settings.coverage_reference == "all" else "sampled only"
    wall["generation_metrics"] = round(time.perf_counter() - start, 1)
    say(f"generation: { {k: v for k, v in generation.items() if isinstance(v, float)} }")
    stability: dict[str, Any] = {"skipped": "n_stability = 0"}
    if settings.n_stability:
        from ase_unimat.evaluation.reference import HULL_SOURCES, load_reference_records

        start = time.perf_counter()
        hull = list(hull_records) if hull_records is not None else load_reference_records(sources=HULL_SOURCES)
        train = list(training) if training is not None else default_training(model)
        label = "the given training set" if training is not None else "the model's training set (reference.h5)"
        stability = stability_scores(first, settings=settings, hull_records=hull, training=train, training_label=label,
                                     cache_dir=Path(cache_dir) if cache_dir is not None else Path(out_dir), say=say)  # fmt: skip
        wall["stability"] = round(time.perf_counter() - start, 1)
    net_cfg = net.config.diffusion
    result = {
        "model": identity,
        "reference_set": {"source": source, "n": len(references)},
        "settings": {**asdict(settings), "steps": settings.steps or net_cfg.default_steps,
                     "guidance": settings.guidance if settings.guidance is not None else net_cfg.default_guidance,
                     "corrector_steps": net_cfg.corrector_steps, "torch_threads": settings.threads,
                     "seed_formula": f"seed * 1_000_000 + test_index * {MAX_K} + sample",
                     "subsets": "numpy default_rng([seed, 1]) (CSP), [seed, 2] (k samples), [seed, 3] (stability)"},
        "csp": csp,
        "generation": generation,
        "stability": stability,
        "failed_samples": sampling["failed_samples"],
        "wall_s": wall,
        "samples": {"k1_seeds": [samples[i][0].info["seed"] for i in csp_indices if samples[i]]},
    }  # fmt: skip
    if "e_hull" in stability:
        stability["e_hull"] = [None if not np.isfinite(x) else round(float(x), 5) for x in stability["e_hull"]]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{stem}.md").write_text(summary_markdown(result))
    if stability.get("e_hull"):
        plot_e_hull(stability, out_dir / f"{stem}.png", title=f"{identity['name']} (step {identity['step']})")
    return result


# ------------------------------------------------------------------------------------------- outputs


def _pct(value: Any) -> str:
    return "-" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{100 * value:.1f} %"


def _num(value: Any, digits: int = 3) -> str:
    return "-" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{value:.{digits}f}"


def summary_markdown(result: dict[str, Any]) -> str:
    """A short markdown table of the headline numbers and the settings behind them."""
    model, csp, gen, st, s = result["model"], result["csp"], result["generation"], result["stability"], result["settings"]
    k = csp.get("k", s["k"])
    notes = [f"Generative metrics: {gen['note']}."]
    rows = [
        ("CSP match@1 / RMSE@1", f"{_pct(csp['match_rate_at_1'])} / {_num(csp['rmse_at_1'])}", f"n = {csp['n']}"),
        (f"CSP match@{k} / RMSE@{k}", f"{_pct(csp.get(f'match_rate_at_{k}'))} / {_num(csp.get(f'rmse_at_{k}'))}",
         f"n = {csp.get('n_topk', 0)}"),
        ("structure / composition validity", f"{_pct(gen['struct_valid'])} / {_pct(gen['comp_valid'])}",
         "compositions given (CSP)"),
        ("COV-R / COV-P", f"{_pct(gen['cov_recall'])} / {_pct(gen['cov_precision'])}",
         f"cutoffs {gen['struct_cutoff']} / {gen['comp_cutoff']}, {gen['n_reference']} references"),
        ("W(density) / W(#elements)", f"{_num(gen['wdist_density'])} / {_num(gen['wdist_num_elems'])}", ""),
    ]  # fmt: skip
    if "e_hull" in st:
        q = st["e_hull_quartiles"] or [math.nan, math.nan]
        rows += [
            ("E_hull median [Q1, Q3] (eV/atom)", f"{_num(st['e_hull_median'])} [{_num(q[0])}, {_num(q[1])}]",
             f"{st['n_relaxed']} of {st['n']} relaxed ({st['relax']['calculator']})"),
            ("E_hull <= 0 / <= 0.1", f"{_pct(st['frac_e_hull_le_0'])} / {_pct(st['frac_e_hull_le_0.1'])}", ""),
            ("unique / novel / S.U.N.", f"{_pct(st['uniqueness'])} / {_pct(st['novelty'])} / {_pct(st['sun_rate'])}",
             f"novelty vs {st['novelty_reference']}"),
        ]  # fmt: skip
        undefined = st["hull_undefined"]
        notes.append(f"Stability: {undefined['samples_passed_over']} candidates passed over for containing an element "
                     f"without elemental reference ({', '.join(undefined['unreferenced_elements']) or 'none'}: "
                     f"{_pct(undefined['share_of_all_samples'])} of all samples). Hulls hold only the data's phases "
                     "(mp_20 train + extra MP, not the test structures), so E_hull < 0 is common and the "
                     "'<= 0' share overstates stability against the full Materials Project.")  # fmt: skip
    lines = [
        f"# Model quality: {model['name']} (step {model['step']}) on mp_20/test",
        "",
        f"Sampler {s['sampler']}, {s['steps']} steps, guidance {s['guidance']}, corrector {s['corrector_steps']}; "
        f"seed {s['seed']}; torch threads {s['torch_threads']}. Wall time per part (s): "
        + ", ".join(f"{k} {v}" for k, v in result["wall_s"].items()) + ".",
        "",
        "| metric | value | note |",
        "|---|---|---|",
        *[f"| {a} | {b} | {c} |" for a, b, c in rows],
        "",
        *[f"- {note}" for note in notes],
        "",
    ]  # fmt: skip
    return "\n".join(lines)


def plot_e_hull(stability: dict[str, Any], path: Path, *, title: str) -> None:
    """Histogram of the relaxed samples' energies above hull."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = [x for x in stability["e_hull"] if x is not None]
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
    ax.hist(values, bins=20, color="tab:blue", edgecolor="white")
    ax.axvline(0.0, color="k", lw=0.8)
    ax.axvline(stability["stable_threshold"], color="tab:red", lw=0.8, ls="--", label="S.U.N. threshold")
    ax.set_xlabel("E above hull (eV/atom)")
    ax.set_ylabel("samples")
    ax.set_title(f"{title}: {len(values)} relaxed samples", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


