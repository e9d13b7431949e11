"""Samplers of a :class:`~ase_unimat.model.diffusion.UniMatModel` and decoding to ``ase.Atoms``.

Every sampler has one signature::

    sample(model, composition, *, seeds, steps, guidance, device, start=None, strength=1.0,
           spacegroup=None) -> (coords, lattice)

``composition`` is ``(B, 9, 18)`` counts, or None for unconditional sampling (the dense network
generates occupancy; the atom network first draws a composition from its empirical prior).
Returned ``coords (B, L, 9, 18, 3)`` hold -1 in empty slots and wrapped fractional coordinates in
occupied ones; ``lattice (B, 6)`` is ``(a, b, c, alpha, beta, gamma)`` in Angstrom and degrees,
unrepaired (:func:`to_atoms` repairs it). ``spacegroup`` (B,) space-group numbers (0 = none) is the
condition of a model trained with one (``model.spacegroup_condition``); ``guidance`` w != 1 mixes
``uncond + w (cond - uncond)`` and is refused by a model that has no condition to drop.

Both samplers walk the same time grid ``t_k = k / steps`` from 1 down to 0:

- ``ancestral``: the reverse VE SDE on the torus (DiffCSP's predictor) with an optional Langevin
  corrector, and ancestral DDPM for the lattice (and occupancy);
- ``ddim``: deterministic -- Euler on the probability-flow ODE in sigma for the coordinates and
  DDIM (eta = 0) for the lattice (and occupancy); 20-50 steps suffice.

Measured on a short-trained "cpu" model (``bench/results/sampler_quality.json``, 8 samples per
mp_20/val composition): ``ancestral`` with 50 steps and one corrector step gave 41 % CSP match and
95 % valid structures, ``ddim`` with 20, 50 or 100 steps 32-34 % and 82-83 % (it is 2-5x faster).
Prefer ``ancestral`` where seed quality matters more than sampling time.

Starting from given structures (``start=``, ``strength=s``): instead of pure noise at t = 1, each
sample starts at ``t_0 = round(s * steps) / steps`` from its own structure noised to that level --
coordinates ``(x_0 + sigma(t_0) eps) mod 1``, lattice ``sqrt(ab) z_0 + sqrt(1 - ab) eps`` -- and the
reverse process runs from there (SDEdit, Meng et al. 2022). ``s = 1`` is plain sampling; small
``s`` keeps the start's arrangement and lets the model repair its details. The search uses it to
denoise prototype-substitution templates (:mod:`ase_unimat.search.unimat_seeds`).

Reproducibility: sample ``i`` draws all its noise from its own ``torch.Generator`` (on the CPU)
seeded with ``seeds[i]``, in a fixed order, and only as many numbers as its own composition needs,
so a structure depends on (model, composition, seed, sampler, steps, guidance) and not on the other
samples in the batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from ase import Atoms

from ase_unimat.core.periodic_table import GRID_SHAPE
from ase_unimat.core.representation import NULL, decode
from ase_unimat.model.cell_reduction import reduce_cells

#: Lattice repair limits: angles are kept in [MIN_ANGLE, 180 - MIN_ANGLE] and the cell's volume
#: at least MIN_VOLUME_FACTOR * a * b * c (i.e. not nearly flat).
MIN_ANGLE = 20.0
MIN_VOLUME_FACTOR = 0.05
MIN_LENGTH = 1.0


class PerSampleNoise:
    """One CPU ``torch.Generator`` per sample; draws only what each sample needs."""

    def __init__(self, seeds: Sequence[int], device: torch.device) -> None:
        self.generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
        self.device = device

    def draw(self, sizes: Sequence[int], *, uniform: bool = False) -> list[torch.Tensor]:
        """Sample ``i`` gets a flat tensor of ``sizes[i]`` numbers (normal, or uniform in [0, 1))."""
        fn = torch.rand if uniform else torch.randn
        return [fn(int(n), generator=g) for n, g in zip(sizes, self.generators, strict=True)]

    def prior_index(self, size: int) -> list[int]:
        """A uniform index into a prior of ``size`` entries, per sample."""
        return [int(torch.randint(size, (1,), generator=g)) for g in self.generators]


def _scatter(mask: torch.Tensor, values: list[torch.Tensor], width: int) -> torch.Tensor:
    """(B, L, 9, 18, width) zeros with each sample's flat values written into its masked slots."""
    out = torch.zeros(*mask.shape, width, device=mask.device)
    out[mask] = torch.cat(values).view(-1, width).to(mask.device)
    return out


class _State:
    """The evolving sample: coords on the torus, lattice features, occupancy bits (dense)."""

    def __init__(self, model, composition: torch.Tensor | None, seeds: Sequence[int], device, *,
                 start: tuple[torch.Tensor, torch.Tensor] | None = None, t_start: float = 1.0) -> None:
        self.model = model
        self.constraint = None  # a SymmetryConstraint, set by _start
        self.noise = PerSampleNoise(seeds, device)
        b, n_slots = len(seeds), model.n_slots
        if composition is None and not model.unconditional:
            prior = model.prior_compositions
            if len(prior) == 0:
                raise ValueError("this model has no composition prior: pass a composition (formula)")
            composition = prior[self.noise.prior_index(len(prior))].float()
        self.composition = None if composition is None else composition.to(device).float()
        if self.composition is not None:
            self.known = model.occupied_slots(self.composition)  # (B, L, 9, 18)
        else:
            self.known = None
        # slots whose coordinates are diffused: occupied ones when known, else all of them
        self.mask = self.known if self.known is not None else torch.ones(b, n_slots, *GRID_SHAPE, dtype=torch.bool, device=device)
        self.sizes = self.mask.flatten(1).sum(1).tolist()
        if start is None:
            self.coords = _scatter(self.mask, self.noise.draw([3 * n for n in self.sizes], uniform=True), 3)
            self.lattice = torch.stack(self.noise.draw([6] * b)).to(device)  # (B, 6)
        else:
            self.coords, self.lattice = self._noised_start(start, t_start)
        self.occupancy = None
        if model.unconditional:
            self.occupancy = torch.stack(self.noise.draw([n_slots * 162] * b)).view(b, n_slots, *GRID_SHAPE).to(device)

    def _noised_start(self, start, t_start: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Each start structure noised to time ``t_start`` (coords on the torus, VP lattice)."""
        coords0, lattice0 = (x.to(self.mask.device) for x in start)  # (B, L, 9, 18, 3), (B, 6)
        if self.known is None:
            raise ValueError("starting structures need a composition (conditional sampling)")
        if coords0.shape != (*self.mask.shape, 3) or lattice0.shape != (len(self.sizes), 6):
            raise ValueError(f"start shapes {tuple(coords0.shape)}, {tuple(lattice0.shape)} do not match "
                             f"{len(self.sizes)} samples of {self.mask.shape[1]} slots")
        if not torch.equal(coords0[..., 0] > -0.5, self.known):
            raise ValueError("a starting structure's composition differs from the composition to sample")
        if self.model.config.diffusion.reduce_cells:
            coords0, lattice0 = reduce_cells(coords0.float(), lattice0.double())
        t = torch.tensor([t_start])
        sigma, ab = float(self.model.sigma(t)), float(self.model.alpha_bar(t))
        coords = torch.remainder(coords0.float() + sigma * self.coord_noise(), 1.0)
        coords = torch.where(self.mask[..., None], coords, torch.zeros_like(coords))
        z0 = self.model.scaler.encode(lattice0.float(), self.mask.flatten(1).sum(1))  # (B, 6)
        lattice = math.sqrt(ab) * z0 + math.sqrt(1 - ab) * self.lattice_noise()
        return coords, lattice

    def constrain(self) -> None:
        """Impose the symmetry constraint (if any) on the coordinates; empty slots stay zero."""
        if self.constraint is not None:
            self.coords = torch.where(self.mask[..., None], self.constraint(self.coords), self.coords)

    def coord_noise(self) -> torch.Tensor:
        return _scatter(self.mask, self.noise.draw([3 * n for n in self.sizes]), 3)

    def lattice_noise(self) -> torch.Tensor:
        return torch.stack(self.noise.draw([6] * len(self.sizes))).to(self.mask.device)

    def occupancy_noise(self) -> torch.Tensor:
        flat = self.noise.draw([self.occupancy[0].numel()] * len(self.sizes))
        return torch.stack(flat).view(self.occupancy.shape).to(self.occupancy.device)

    def impose_occupancy(self, alpha_bar: float, noise: torch.Tensor) -> None:
        """Replace the occupancy channel by the known occupancy noised to this level (conditional dense)."""
        if self.occupancy is not None and self.known is not None:
            clean = self.known.float() * 2 - 1
            self.occupancy = math.sqrt(alpha_bar) * clean + math.sqrt(1 - alpha_bar) * noise

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoded ``coords`` with -1 in empty slots and the lattice in Angstrom/degrees."""
        if self.known is not None:
            occupied = self.known
        else:
            occupied = (self.occupancy > 0) & self.model.occupiable[None, None]
        coords = torch.where(occupied[..., None], torch.remainder(self.coords, 1.0), torch.full_like(self.coords, NULL))
        natoms = occupied.flatten(1).sum(1)
        lattice = self.model.scaler.decode(self.lattice, natoms)
        return coords, lattice


def _vp_step(x: torch.Tensor, eps: torch.Tensor, ab_t: float, ab_s: float, noise: torch.Tensor | None, clip: float):
    """One VP step from level ab_t to ab_s: DDPM ancestral when ``noise`` is given, else DDIM (eta=0)."""
    x0 = ((x - math.sqrt(1 - ab_t) * eps) / math.sqrt(ab_t)).clamp(-clip, clip)
    if noise is None:
        eps = (x - math.sqrt(ab_t) * x0) / math.sqrt(1 - ab_t)
        return math.sqrt(ab_s) * x0 + math.sqrt(1 - ab_s) * eps
    alpha = ab_t / ab_s
    mean = (math.sqrt(ab_s) * (1 - alpha) * x0 + math.sqrt(alpha) * (1 - ab_s) * x) / (1 - ab_t)
    var = (1 - ab_s) / (1 - ab_t) * (1 - alpha)
    return mean + math.sqrt(max(var, 0.0)) * noise


def _levels(model, k: int, steps: int) -> tuple[torch.Tensor, float, float, float, float]:
    t = torch.tensor([k / steps])
    s = torch.tensor([(k - 1) / steps])
    sigma_t = float(model.sigma(t))
    sigma_s = float(model.sigma(s)) if k > 1 else 0.0
    ab_t = float(model.alpha_bar(t))
    ab_s = float(model.alpha_bar(s)) if k > 1 else 1.0
    return t, sigma_t, sigma_s, ab_t, ab_s


def _predict(model, state: _State, t: torch.Tensor, guidance: float):
    b = state.coords.shape[0]
    tt = t.to(state.coords.device).expand(b)
    extra = {} if state.spacegroup is None else {"spacegroup": state.spacegroup}
    return model.predict(state.coords, state.lattice, tt, state.composition, occupancy=state.occupancy,
                         guidance=guidance, **extra)


def _check(model, composition, seeds, steps, guidance, spacegroup) -> None:
    if not math.isfinite(guidance) or guidance < 0:
        raise ValueError(f"guidance must be a finite number >= 0, got {guidance}")
    if guidance != 1.0 and not getattr(model, "guidable", model.unconditional):
        raise ValueError("this model has no condition to guide (an atom network without a space-group condition): "
                         "guidance must be 1")
    if spacegroup is not None:
        if not getattr(model, "spacegroup_conditioned", False):
            raise ValueError("this model takes no space-group condition")
        if len(spacegroup) != len(seeds):
            raise ValueError(f"{len(spacegroup)} space groups but {len(seeds)} seeds")
        if any(not 0 <= int(g) <= 230 for g in spacegroup):
            raise ValueError("space groups must be numbers 1-230 (0 = none)")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if composition is not None and len(composition) != len(seeds):
        raise ValueError(f"{len(composition)} compositions but {len(seeds)} seeds")
    if len(seeds) == 0:
        raise ValueError("no seeds: nothing to sample")


def _start(model, composition, seeds, steps, device, start, strength, guidance, spacegroup,
           constraint=None) -> tuple[_State, int]:  # fmt: skip
    """Check the arguments, put the model in eval mode, draw each sample's start; the first step."""
    _check(model, composition, seeds, steps, guidance, spacegroup)
    if constraint is not None and len(constraint) != len(seeds):
        raise ValueError(f"a symmetry constraint for {len(constraint)} samples but {len(seeds)} seeds")
    if not 0.0 < strength <= 1.0:
        raise ValueError(f"strength must be in (0, 1], got {strength}")
    first = steps if start is None else max(1, round(strength * steps))
    model.eval()
    state = _State(model, composition, seeds, torch.device(device), start=start, t_start=first / steps)
    state.spacegroup = None if spacegroup is None else torch.as_tensor(
        [int(g) for g in spacegroup], dtype=torch.long, device=state.coords.device)
    state.constraint = constraint
    state.constrain()
    return state, first


@torch.inference_mode()
def sample_ancestral(
    model,
    composition: torch.Tensor | None,
    *,
    seeds: Sequence[int],
    steps: int,
    guidance: float = 1.0,
    device: str | torch.device = "cpu",
    start: tuple[torch.Tensor, torch.Tensor] | None = None,
    strength: float = 1.0,
    spacegroup: Sequence[int] | None = None,
    constraint=None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reverse VE SDE on the torus with Langevin corrector; ancestral DDPM for lattice/occupancy.

    ``constraint`` (a :class:`~ase_unimat.model.symmetry_constraint.SymmetryConstraint`) is applied
    to the coordinates after every update.
    """
    state, first = _start(model, composition, seeds, steps, device, start, strength, guidance, spacegroup, constraint)
    cfg = model.config.diffusion
    for k in range(first, 0, -1):
        t, sigma_t, sigma_s, ab_t, ab_s = _levels(model, k, steps)
        if state.occupancy is not None and state.known is not None:
            state.impose_occupancy(ab_t, state.occupancy_noise())
        sig = torch.full((state.coords.shape[0],), sigma_t, device=state.coords.device)
        for _ in range(cfg.corrector_steps):
            out = _predict(model, state, t, guidance)
            delta = cfg.corrector_step * sigma_t**2
            score = model.coord_score(out.coords, sig)
            state.coords = torch.remainder(state.coords + delta * score + math.sqrt(2 * delta) * state.coord_noise(), 1.0)
            state.constrain()
        out = _predict(model, state, t, guidance)
        score = model.coord_score(out.coords, sig)
        jump = sigma_t**2 - sigma_s**2
        std = math.sqrt(sigma_s**2 * jump / sigma_t**2)
        state.coords = torch.remainder(state.coords + jump * score + std * state.coord_noise(), 1.0)
        state.constrain()
        lattice_noise = state.lattice_noise() if k > 1 else None
        state.lattice = _vp_step(state.lattice, out.lattice, ab_t, ab_s, lattice_noise, clip=5.0)
        if state.occupancy is not None:
            occ_noise = state.occupancy_noise() if k > 1 else None
            state.occupancy = _vp_step(state.occupancy, out.occupancy, ab_t, ab_s, occ_noise, clip=1.0)
    return state.result()


@torch.inference_mode()
def sample_ddim(
    model,
    composition: torch.Tensor | None,
    *,
    seeds: Sequence[int],
    steps: int,
    guidance: float = 1.0,
    device: str | torch.device = "cpu",
    start: tuple[torch.Tensor, torch.Tensor] | None = None,
    strength: float = 1.0,
    spacegroup: Sequence[int] | None = None,
    constraint=None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic few-step sampler: probability-flow ODE (Euler in sigma) + DDIM (eta = 0)."""
    state, first = _start(model, composition, seeds, steps, device, start, strength, guidance, spacegroup, constraint)
    fixed_occ_noise = state.occupancy_noise() if state.occupancy is not None else None
    for k in range(first, 0, -1):
        t, sigma_t, sigma_s, ab_t, ab_s = _levels(model, k, steps)
        if fixed_occ_noise is not None and state.known is not None:
            state.impose_occupancy(ab_t, fixed_occ_noise)
        out = _predict(model, state, t, guidance)
        sig = torch.full((state.coords.shape[0],), sigma_t, device=state.coords.device)
        score = model.coord_score(out.coords, sig)
        state.coords = torch.remainder(state.coords + (sigma_t - sigma_s) * sigma_t * score, 1.0)
        state.constrain()
        state.lattice = _vp_step(state.lattice, out.lattice, ab_t, ab_s, None, clip=5.0)
        if state.occupancy is not None:
            state.occupancy = _vp_step(state.occupancy, out.occupancy, ab_t, ab_s, None, clip=1.0)
    return state.result()


SAMPLERS: Mapping[str, Callable[..., tuple[torch.Tensor, torch.Tensor]]] = {
    "ancestral": sample_ancestral,
    "ddim": sample_ddim,
}


def get_sampler(name: str) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    """The sampler function called ``name`` (``"ancestral"`` or ``"ddim"``)."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {sorted(SAMPLERS)}")
    return SAMPLERS[name]


# ---------------------------------------------------------------- decoding


def repair_lattice(lattice: Sequence[float]) -> tuple[np.ndarray, bool]:
    """A valid ``(a, b, c, alpha, beta, gamma)`` near ``lattice`` and whether it had to change.

    Lengths are raised to at least ``MIN_LENGTH``; angles clipped to ``[MIN_ANGLE, 180 - MIN_ANGLE]``;
    then, while the three angles do not make a 3-D cell with volume at least
    ``MIN_VOLUME_FACTOR * a b c``, all three are pulled 10 % of the way towards 90 degrees.
    Non-finite values cannot be repaired and raise ``ValueError``.
    """
    par = np.asarray(lattice, dtype=np.float64).copy()
    if par.shape != (6,) or not np.all(np.isfinite(par)):
        raise ValueError(f"lattice is not 6 finite numbers: {par}")
    original = par.copy()
    par[:3] = np.maximum(par[:3], MIN_LENGTH)
    par[3:] = np.clip(par[3:], MIN_ANGLE, 180.0 - MIN_ANGLE)
    for _ in range(200):
        if _volume_factor(par[3:]) >= MIN_VOLUME_FACTOR:
            break
        par[3:] = 90.0 + 0.9 * (par[3:] - 90.0)
    return par, not np.allclose(par, original)


def _volume_factor(angles_deg: np.ndarray) -> float:
    """V / (a b c) of a cell with these angles (NaN-free; <= 0 when the angles make no cell)."""
    c = np.cos(np.deg2rad(angles_deg))
    value = 1 - (c**2).sum() + 2 * c.prod()
    return float(np.sqrt(value)) if value > 0 else -1.0


def to_atoms(
    coords: torch.Tensor | np.ndarray,
    lattice: torch.Tensor | np.ndarray,
    *,
    info: Sequence[Mapping] | Mapping | None = None,
) -> list[Atoms]:
    """Decode sampled tensors to Atoms, repairing invalid lattices (see :func:`repair_lattice`).

    Slots with values near -1 are dropped and coordinates wrapped into [0, 1). ``info`` (one dict
    for all, or one per sample) is copied into each ``atoms.info``, plus ``lattice_repaired``.
    A sample without atoms raises ``ValueError``.
    """
    coords = np.asarray(coords.detach().cpu() if isinstance(coords, torch.Tensor) else coords, dtype=np.float32)
    lattice = np.asarray(lattice.detach().cpu() if isinstance(lattice, torch.Tensor) else lattice, dtype=np.float64)
    if info is None or isinstance(info, Mapping):
        info = [info or {}] * len(coords)
    structures = []
    for i, (c, lat) in enumerate(zip(coords, lattice, strict=True)):
        repaired, changed = repair_lattice(lat)
        atoms = decode(c, repaired)
        if len(atoms) == 0:
            raise ValueError(f"sample {i} has no atoms")
        atoms.info.update(dict(info[i]))
        atoms.info["lattice_repaired"] = bool(changed)
        structures.append(atoms)
    return structures


def compositions_tensor(counts: Sequence[np.ndarray]) -> torch.Tensor:
    """Stack (9, 18) count grids into a float (B, 9, 18) tensor."""
    return torch.as_tensor(np.stack([np.asarray(c) for c in counts]), dtype=torch.float32)
