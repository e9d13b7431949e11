"""Sampler settings compared on one trained model: CSP match rate, validity, volume error, time.

Run:  python -m bench sampler_quality [--quick]   (uses the default model models/unimat-mp20;
      from Python: ``run(quick=False, out_dir=..., model="path/to/model.pt")``)

Every setting samples ``k`` structures per mp_20/val composition with the same seeds and is scored
as in ``bench_diffusion_choices.score_on_val``.
"""

from __future__ import annotations

from pathlib import Path

SETTINGS = [
    {"sampler": "ddim", "steps": 20},
    {"sampler": "ddim", "steps": 50},
    {"sampler": "ddim", "steps": 100},
    {"sampler": "ancestral", "steps": 50, "corrector_steps": 0},
    {"sampler": "ancestral", "steps": 50, "corrector_steps": 1},
    {"sampler": "ancestral", "steps": 100, "corrector_steps": 1},
    {"sampler": "ancestral", "steps": 200, "corrector_steps": 0},
]


def run(*, quick: bool, out_dir: Path, model=None, k: int | None = None, settings=None) -> dict:
    """Sampler settings compared on one trained model (CSP match rate, validity, time) on mp_20/val."""
    import torch

    from ase_unimat.generation import load_model
    from bench.bench_diffusion_choices import score_on_val

    torch.set_num_threads(1)
    try:
        net = load_model(model, device="cpu")
    except FileNotFoundError as err:
        return {"skipped": str(err)}
    k = k or (1 if quick else 8)
    chosen = settings or (SETTINGS[:2] if quick else SETTINGS)
    cases = []
    default_corrector = net.config.diffusion.corrector_steps
    for setting in chosen:
        net.config.diffusion.corrector_steps = setting.get("corrector_steps", default_corrector)
        score = score_on_val(net, k=k, steps=setting["steps"], sampler=setting["sampler"])
        cases.append({**setting, **score})
        print(cases[-1])
    net.config.diffusion.corrector_steps = default_corrector
    return {"model": str(model or "default"), "samples_per_composition": k, "cases": cases}
