"""The model-quality benchmark's sampling: the CSP samples of the test compositions, batched together.

It owns :func:`sample_compositions` (one structure per ``(counts, seed, info)`` job, compositions of
a batch sampled together; each sample equals ``generate(composition, seeds=[seed])``) and
:func:`csp_samples` (one sample for every CSP structure and ``k - 1`` more for the top-k subset,
with wall times and the failed samples).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from ase_unimat.core.geometry import atom_counts
from bench._model_quality_data import sample_seed
from bench._model_quality_settings import QualitySettings


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
