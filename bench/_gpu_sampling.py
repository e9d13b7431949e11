"""The GPU benchmark's ``sampling`` section: structures/s of the shipped model at large batches.

It owns :func:`sampling` (both samplers of the plan at each batch size, decoding to Atoms at the
largest, one bf16-autocast case, and the network calls alone), its timers :func:`time_sampling` and
:func:`network_only`, and the issue's target, ``SAMPLING_TARGET`` structures/s.
"""

from __future__ import annotations

import time

from bench._gpu_common import attempt, autocast, compositions, peak_memory_gib, reset_peak_memory, sync
from bench._gpu_plan import REPO, SHIPPED, Plan

# torch and ase_unimat are imported inside the functions: `python -m bench --list` imports bench.gpu and this module.

SAMPLING_TARGET = 2000  # structures/s on an H100-class GPU (issue 14)


def time_sampling(model, batch: int, sampler: str, steps: int, plan: Plan, *, bf16: bool = False,
                  decode: bool = False) -> dict:  # fmt: skip
    """Structures/s of one sampler call over ``batch`` compositions (and of decoding them to Atoms)."""
    from ase_unimat.model.sampler import get_sampler, to_atoms

    chunk = compositions(batch).to(plan.device)
    sync(plan.device)
    started = time.perf_counter()
    with autocast(plan.device, bf16):
        coords, lattice = get_sampler(sampler)(model, chunk, seeds=range(batch), steps=steps, device=plan.device)
    sync(plan.device)
    seconds = time.perf_counter() - started
    row = {"sampler": sampler, "steps": steps, "batch": batch, "bf16_autocast": bf16, "seconds": round(seconds, 3),
           "structures_per_s": round(batch / seconds, 1), "peak_memory_gib": peak_memory_gib(plan.device)}  # fmt: skip
    if decode:
        started = time.perf_counter()
        structures = to_atoms(coords.float(), lattice.float())
        decode_s = time.perf_counter() - started
        row.update(decode_s=round(decode_s, 3), structures_per_s_with_decode=round(len(structures) / (seconds + decode_s), 1))
    return row


def network_only(model, batch: int, plan: Plan) -> dict:
    """Structures/s if only the network calls cost time: ``network_calls`` predictions on a batch, scaled."""
    import torch

    comp = compositions(batch).to(plan.device)
    mask = model.occupied_slots(comp)
    coords = torch.rand(*mask.shape, 3, device=plan.device) * mask[..., None]  # zeros in empty slots
    lattice = torch.randn(batch, 6, device=plan.device)
    t = torch.full((batch,), 0.5, device=plan.device)
    with torch.no_grad():
        model.predict(coords, lattice, t, comp)  # warm-up
        sync(plan.device)
        started = time.perf_counter()
        for _ in range(plan.network_calls):
            model.predict(coords, lattice, t, comp)
        sync(plan.device)
    per_call = (time.perf_counter() - started) / plan.network_calls
    calls = 2 * 50  # the default sampler: 50 ancestral steps, one corrector call each
    return {"batch": batch, "seconds_per_call": round(per_call, 5),
            "structures_per_s_at_100_calls": round(batch / (per_call * calls), 1)}  # fmt: skip


def sampling(plan: Plan) -> dict:
    """Structures/s of the shipped model: both samplers at large batches, network alone, bf16 autocast."""
    from ase_unimat.generation import load_model

    model = load_model(SHIPPED / "model.pt", device=plan.device)
    time_sampling(model, min(plan.sample_batches), "ddim", 2, plan)  # warm-up
    largest = max(plan.sample_batches)
    runs = [(name, steps, batch, False) for name, steps in plan.sample_cases for batch in plan.sample_batches]
    runs.append((*plan.sample_cases[0], largest, True))  # the default sampler under bf16 autocast
    cases = []
    for name, steps, batch, bf16 in runs:
        labels = {"sampler": name, "steps": steps, "batch": batch, "bf16_autocast": bf16}
        reset_peak_memory(plan.device)
        cases.append(attempt(labels, lambda n=name, k=steps, b=batch, h=bf16: time_sampling(
            model, b, n, k, plan, bf16=h, decode=b == largest and not h)))  # fmt: skip
    sampler, steps = plan.sample_cases[0]
    default = [row for row in cases if row["sampler"] == sampler and not row["bf16_autocast"] and "error" not in row]
    best_default = max((row["structures_per_s"] for row in default), default=None)
    return {
        "model": str(SHIPPED.relative_to(REPO)),
        "compositions": "models/unimat-mp20/reference.h5, cycled (2-20 atoms)",
        "cases": cases,
        "network_only": [attempt({"batch": batch}, lambda b=batch: network_only(model, b, plan))
                         for batch in plan.sample_batches],  # fmt: skip
        "default_sampler": f"{sampler}, {steps} steps",
        "best_default_structures_per_s": best_default,
        "target_structures_per_s": SAMPLING_TARGET,
        "meets_target": None if plan.dry_run or best_default is None else best_default >= SAMPLING_TARGET,
    }
