"""How plausible the model finds given structures: their denoising errors at fixed noise levels.

A diffusion model's denoising loss on a structure, summed over noise levels, bounds its negative
log-likelihood (the ELBO, up to the weighting of the levels). Evaluated for several candidate
structures of one composition with the same times and the same noise for every candidate (common
random numbers), the differences between candidates are far less noisy than the errors
themselves, so a few draws rank them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ase_unimat.core.representation import composition_of, encode_batch

DEFAULT_TIMES = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7)


@dataclass(frozen=True)
class Plausibility:
    """Denoising errors of each structure at each time, each ``(N, T)``: lower is more plausible.

    ``coord`` is the mean squared coordinate-score error per coordinate, ``lattice`` the mean
    squared lattice-noise error, both averaged over the draws; ``times`` the ``T`` times.
    """

    coord: np.ndarray
    lattice: np.ndarray
    times: tuple[float, ...]

    @property
    def score(self) -> np.ndarray:
        """(N,) coordinate plus lattice error averaged over the times (the training loss's weighting)."""
        return self.coord.mean(1) + self.lattice.mean(1)


@torch.no_grad()
def plausibility(
    model,
    structures: Sequence,
    *,
    spacegroups: Sequence[int] | None = None,
    times: Sequence[float] = DEFAULT_TIMES,
    draws: int = 4,
    seed: int = 0,
) -> Plausibility:
    """Denoising errors of ``structures`` under ``model`` (a :class:`~ase_unimat.model.diffusion.UniMatModel`).

    Parameters
    ----------
    structures
        ``ase.Atoms`` (or pymatgen structures); compared fairly only within one composition.
    spacegroups
        The space-group condition of each structure (0 = none) for a space-group model; None
        evaluates all without the condition.
    times
        Diffusion times in (0, 1] evaluated for every structure.
    draws
        Noise draws per time, shared by all structures (common random numbers).
    seed
        Seed of the noise.
    """
    if len(structures) == 0:
        return Plausibility(coord=np.zeros((0, len(times))), lattice=np.zeros((0, len(times))), times=tuple(times))
    if draws < 1 or not times or not all(0.0 < float(t) <= 1.0 for t in times):
        raise ValueError(f"plausibility needs draws >= 1 and times in (0, 1], got draws={draws}, times={tuple(times)}")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    coords, lattice = encode_batch(list(structures), n_slots=model.n_slots)  # (N, L, 9, 18, 3), (N, 6)
    n = len(coords)
    batch = {
        "coords": torch.from_numpy(coords).to(device),
        "lattice": torch.from_numpy(lattice).float().to(device),
        "composition": torch.from_numpy(np.stack([composition_of(c) for c in coords])).float().to(device),
    }
    condition = None
    if getattr(model, "spacegroup_conditioned", False):
        values = np.zeros(n, dtype=np.int64) if spacegroups is None else np.asarray(spacegroups, dtype=np.int64)
        if values.shape != (n,) or np.any((values < 0) | (values > 230)):
            raise ValueError(f"spacegroups must be {n} numbers 0-230")
        condition = torch.from_numpy(values).to(device)
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    coord_sum = torch.zeros((n, len(times)), dtype=torch.float64)
    lattice_sum = torch.zeros((n, len(times)), dtype=torch.float64)
    for i, t in enumerate(times):
        for _ in range(draws):
            eps_x = torch.randn(coords.shape[1:], generator=generator).expand(n, *coords.shape[1:])  # (N, L, 9, 18, 3)
            eps_l = torch.randn(6, generator=generator).expand(n, 6)  # (N, 6)
            errors = model.denoising_errors(batch, t=torch.full((n,), float(t)), spacegroup=condition,
                                            noise=(eps_x, eps_l), generator=generator)  # fmt: skip
            coord_sum[:, i] += errors.coord_mean.double().cpu()
            lattice_sum[:, i] += errors.lattice.double().cpu()
    model.train(was_training)
    return Plausibility(coord=(coord_sum / draws).numpy(), lattice=(lattice_sum / draws).numpy(),
                        times=tuple(float(t) for t in times))
