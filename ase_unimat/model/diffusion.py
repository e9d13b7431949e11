"""The UniMat diffusion: noise schedules, the corruption of each part, losses and guidance.

Three parts are diffused, each in the space where it is well behaved:

- **fractional coordinates** live on the torus ``[0, 1)^3``: variance-exploding wrapped normal
  (DiffCSP), ``x_t = (x_0 + sigma_t eps) mod 1`` with ``sigma_t`` geometric from ``sigma_min`` to
  ``sigma_max``. The target is the score of the wrapped normal (a sum over periodic images)
  divided by its root-mean-square at that sigma (``coord_target = "score"``), or the noise itself
  (``"eps"``). The loss counts occupied slots only.
- **the lattice**, first reduced (``reduce_cells``: short, nearly orthogonal cell vectors, see
  :mod:`ase_unimat.model.cell_reduction`), as standardised ``(log(a/N^1/3), log(b/N^1/3), log(c/N^1/3), alpha, beta,
  gamma)`` (see :class:`~ase_unimat.model.network_common.LatticeScaler`): variance-preserving DDPM
  (cosine or linear beta), epsilon target.
- **occupancy** (dense network only) as analog bits (+1 occupied, -1 empty), same VP schedule,
  epsilon target, so the dense network can sample unconditionally.

Time is continuous, ``t`` in [0, 1]; samplers pick any grid of times.

Choices, as measured (``bench/bench_diffusion_choices.py``; short trainings of the "cpu" model,
scored by CSP match rate, validity and volume error of samples for the 123 mp_20/val compositions;
``bench/results/diffusion_choices*.json``): the normalised-score coordinate target and the plain
noise target scored alike (match 8.1 vs 7.3 % at 1 sample, 14.6 vs 13.8 % at 4), the score target
gave more valid structures (64 vs 56 %), so it is the default; ``sigma_max = 1.0`` was no better than
0.5 (12.2 vs 13.8 % at 4); cosine and linear lattice schedules tied after 2,500 steps (34.1 vs
35.0 % match at 8, validity 82 vs 84 %) with the cosine one closer in volume (median
|log V ratio| 0.077 vs 0.100), so cosine stays; reduced cells needed fewer lattice repairs at
sampling than unreduced ones (14 vs 23 % of samples after 700 steps; 1 % after 2,500) at a match
rate within the noise (13.8 vs 17.9 % at 4 samples, +-3 %), and keep minimum-image distances exact;
drawing training times as ``u^2`` (more low-noise training) did not help (31.7 vs 34.1 % at 8).

Classifier-free guidance (dense network): the composition is dropped (zeroed) with probability
``cond_drop_prob`` in training; :meth:`UniMatModel.predict` returns
``uncond + w * (cond - uncond)``. The atom network sees the composition by construction and has
no other condition, so it is not guided (``guidance`` is ignored for it): every training structure
is at 0 GPa, so pressure carries no signal, and a space-group condition would need a value the
user of a search does not know (the ground state's symmetry is what is searched for); the data
has it for 4,824 of 6,045 structures, so it stays a possible extension.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ase_unimat.core.periodic_table import GRID_SHAPE, OCCUPIABLE
from ase_unimat.model.cell_reduction import reduce_cells
from ase_unimat.model.config import UniMatConfig
from ase_unimat.model.network_common import LatticeScaler, NetworkOutput, natoms_of, slot_mask

_QUAD_POINTS = 2001  # quadrature grid of the wrapped-normal score norm
_RMS_TABLE = 256  # log-sigma table of the score norm used in training and sampling


# ---------------------------------------------------------------- schedules


def sigma_schedule(t: torch.Tensor, sigma_min: float, sigma_max: float) -> torch.Tensor:
    """Geometric noise level of variance-exploding diffusion (Song et al. 2021): sigma_min^(1-t) sigma_max^t."""
    return sigma_min ** (1.0 - t) * sigma_max**t


def alpha_bar_cosine(t: torch.Tensor, *, s: float = 0.008) -> torch.Tensor:
    """Cosine cumulative signal level of Nichol & Dhariwal (2021), clamped to [1e-5, 1]."""
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    f0 = math.cos(s / (1 + s) * math.pi / 2) ** 2
    return (f / f0).clamp(1e-5, 1.0)


def alpha_bar_linear(t: torch.Tensor, *, beta_min: float, beta_max: float, timesteps: int) -> torch.Tensor:
    """Cumulative signal level of the linear-beta DDPM schedule (Ho et al. 2020) in continuous time."""
    log_ab = -timesteps * (beta_min * t + 0.5 * (beta_max - beta_min) * t**2)
    return torch.exp(log_ab).clamp(1e-5, 1.0)


# ---------------------------------------------------------------- wrapped normal


def wrap_displacement(d: torch.Tensor) -> torch.Tensor:
    """Displacement on the torus, in [-0.5, 0.5)."""
    return d - torch.floor(d + 0.5)


def wrapped_normal_score(d: torch.Tensor, sigma: torch.Tensor, *, n_images: int) -> torch.Tensor:
    """d/dx log of the wrapped normal density at displacement ``d = x_t - x_0`` (same shape as ``d``)."""
    k = torch.arange(-n_images, n_images + 1, device=d.device, dtype=d.dtype)
    dk = wrap_displacement(d)[..., None] + k  # (..., 2n+1)
    sigma = sigma[..., None]
    weights = torch.softmax(-(dk**2) / (2 * sigma**2), dim=-1)
    return -(weights * dk).sum(-1) / sigma[..., 0] ** 2


def wrapped_normal_score_rms(sigma: torch.Tensor, *, n_images: int) -> torch.Tensor:
    """sqrt(E[score^2]) of the wrapped normal at each sigma (quadrature over one period): (S,) -> (S,)."""
    x = torch.linspace(-0.5, 0.5, _QUAD_POINTS, device=sigma.device, dtype=torch.float64)  # (G,)
    s = sigma.double()[:, None]  # (S, 1)
    k = torch.arange(-n_images, n_images + 1, device=sigma.device, dtype=torch.float64)
    xk = x[None, :, None] + k  # (1, G, K)
    log_terms = -(xk**2) / (2 * s[..., None] ** 2)  # (S, G, K)
    density = torch.exp(log_terms).sum(-1)  # (S, G), unnormalised
    score = wrapped_normal_score(x[None].expand(len(s), -1), s.expand(-1, len(x)), n_images=n_images)
    second = (density * score**2).sum(-1) / density.sum(-1)
    return second.sqrt().to(sigma.dtype)


# ---------------------------------------------------------------- the model


@dataclass
class DenoisingErrors:
    """Per-structure errors of :meth:`UniMatModel.denoising_errors`, each ``(B,)``.

    ``coord`` sums the squared coordinate errors over the structure's ``n_coords`` occupied
    coordinates; ``lattice`` is the mean squared lattice-noise error; ``occupancy`` the mean
    squared occupancy error (dense network only, else None).
    """

    coord: torch.Tensor
    n_coords: torch.Tensor
    lattice: torch.Tensor
    occupancy: torch.Tensor | None = None

    @property
    def coord_mean(self) -> torch.Tensor:
        """(B,) mean squared coordinate error per coordinate."""
        return self.coord / self.n_coords.clamp(min=1)


class UniMatModel(nn.Module):
    """A UniMat network plus its diffusion; what the trainer optimises and the samplers call.

    Buffers kept with the weights: ``seen_elements`` (9, 18) bool, every element cell that appeared
    in a training batch (updated by :meth:`loss`), and ``prior_compositions`` (P, 9, 18) int16,
    the empirical composition prior for unconditional sampling (set by
    :meth:`set_composition_prior`; empty until then).
    """

    def __init__(self, config: UniMatConfig) -> None:
        super().__init__()
        self.config = config
        d = config.diffusion
        if config.model.network == "atoms":
            from ase_unimat.model.network_atoms import AtomNetwork

            self.network = AtomNetwork(config.model, lattice_mean=d.lattice_mean, lattice_std=d.lattice_std)
        else:
            from ase_unimat.model.network_dense import DenseNetwork

            if getattr(config.model, "spacegroup_condition", False):
                raise ValueError("spacegroup_condition is an option of the atom network; the dense network guides on the composition")
            self.network = DenseNetwork(config.model)
        self.scaler = LatticeScaler(d.lattice_mean, d.lattice_std)
        self.register_buffer("seen_elements", torch.zeros(GRID_SHAPE, dtype=torch.bool))
        self.register_buffer("prior_compositions", torch.zeros((0, *GRID_SHAPE), dtype=torch.int16))
        self.register_buffer("occupiable", torch.from_numpy(OCCUPIABLE.copy()), persistent=False)
        self.rms_table_range = (d.sigma_min / 2, d.sigma_max * 2)
        table_sigma = torch.logspace(
            math.log10(self.rms_table_range[0]), math.log10(self.rms_table_range[1]), _RMS_TABLE, dtype=torch.float64
        )
        log_rms = torch.log(wrapped_normal_score_rms(table_sigma, n_images=d.n_images)).float()
        self.register_buffer("rms_table", log_rms, persistent=False)  # (T,) log sqrt(E[score^2])

    @property
    def n_slots(self) -> int:
        return self.config.model.n_slots

    @property
    def spacegroup_conditioned(self) -> bool:
        """Whether the network takes a space-group condition (and so guidance acts on it)."""
        return bool(getattr(self.config.model, "spacegroup_condition", False))

    @property
    def guidable(self) -> bool:
        """Whether classifier-free guidance has a condition to act on (dense: composition; atoms: space group)."""
        return self.unconditional or self.spacegroup_conditioned

    def _training_spacegroup(self, batch, b: int, device, rand) -> torch.Tensor:
        """(B,) space groups of a batch (0 where unknown), dropped to 0 with ``cond_drop_prob``."""
        values = batch.get("spacegroup")
        if values is None:
            return torch.zeros(b, dtype=torch.long, device=device)
        values = torch.as_tensor(values, device=device).float()
        known = torch.isfinite(values) & (values >= 1) & (values <= 230)
        sg = torch.where(known, values, torch.zeros_like(values)).round().long()
        keep = rand(b) >= self.config.diffusion.cond_drop_prob
        return torch.where(keep, sg, torch.zeros_like(sg))

    @property
    def unconditional(self) -> bool:
        """Whether the network can sample without a composition (dense: it generates occupancy)."""
        return self.config.model.network == "dense"

    # ------------------------------------------------------------ schedules of this config

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        d = self.config.diffusion
        return sigma_schedule(t, d.sigma_min, d.sigma_max)

    def alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        d = self.config.diffusion
        if d.lattice_schedule == "cosine":
            return alpha_bar_cosine(t)
        return alpha_bar_linear(t, beta_min=d.beta_min, beta_max=d.beta_max, timesteps=d.timesteps)

    def score_rms(self, sigma: torch.Tensor) -> torch.Tensor:
        """sqrt(E[score^2]) of the wrapped normal, interpolated in log sigma from a table (same shape as sigma)."""
        lo, hi = math.log(self.rms_table_range[0]), math.log(self.rms_table_range[1])
        pos = (torch.log(sigma.float()) - lo) / (hi - lo) * (len(self.rms_table) - 1)
        pos = pos.clamp(0, len(self.rms_table) - 1)
        left = pos.floor().long().clamp(max=len(self.rms_table) - 2)
        frac = pos - left
        log_rms = torch.lerp(self.rms_table[left], self.rms_table[left + 1], frac)
        return torch.exp(log_rms).to(sigma.dtype)

    def coord_score(self, pred: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Wrapped-normal score estimate from the network's coordinate output; sigma (B,)."""
        if self.config.diffusion.coord_target == "score":
            return pred * self.score_rms(sigma).view(-1, 1, 1, 1, 1)
        return -pred / sigma.view(-1, 1, 1, 1, 1)

    # ------------------------------------------------------------ training

    def forward(self, batch: dict[str, torch.Tensor], *, generator: torch.Generator | None = None):
        """Same as :meth:`loss` (so DDP wrappers that call ``forward`` work)."""
        return self.loss(batch, generator=generator)

    def loss(
        self, batch: dict[str, torch.Tensor], *, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Denoising loss of one batch (see the module docstring).

        Parameters
        ----------
        batch
            ``coords (B, L, 9, 18, 3)``, ``lattice (B, 6)``, ``composition (B, 9, 18)``; other keys are ignored.
        generator
            Source of the diffusion times and noise (``torch`` global RNG when None).

        Returns
        -------
        loss, terms
            Scalar loss to backpropagate; detached per-term floats for logging.
        """
        if self.training:
            with torch.no_grad():
                self.seen_elements |= batch["composition"].sum(0) > 0
        errors = self.denoising_errors(batch, generator=generator)
        d = self.config.diffusion
        coord_loss = errors.coord.sum() / errors.n_coords.sum().clamp(min=1)
        lattice_loss = errors.lattice.mean()
        total = d.coord_weight * coord_loss + d.lattice_weight * lattice_loss
        terms = {"coord": float(coord_loss.detach()), "lattice": float(lattice_loss.detach())}
        if errors.occupancy is not None:
            occ_loss = errors.occupancy.mean()
            total = total + d.occupancy_weight * occ_loss
            terms["occupancy"] = float(occ_loss.detach())
        terms["loss"] = float(total.detach())
        return total, terms

    def denoising_errors(
        self,
        batch: dict[str, torch.Tensor],
        *,
        t: torch.Tensor | None = None,
        spacegroup: torch.Tensor | None = None,
        noise: tuple[torch.Tensor, torch.Tensor] | None = None,
        generator: torch.Generator | None = None,
    ) -> DenoisingErrors:
        """Per-structure squared errors of one denoising step: the terms :meth:`loss` averages.

        Parameters
        ----------
        batch
            As for :meth:`loss` (``spacegroup (B,)`` read when the network is conditioned on it).
        t
            ``(B,)`` diffusion times; None draws them as in training (``u ** time_power``).
        spacegroup
            ``(B,)`` int64 condition (0 = none) used as given; None takes the batch's, dropped with
            ``cond_drop_prob`` as in training.
        noise
            ``(coords (B, L, 9, 18, 3), lattice (B, 6))`` standard normal noise used instead of
            drawn noise (common random numbers when comparing structures of one composition).
        generator
            Source of the times and noise (``torch`` global RNG when None).

        A structure's errors at fixed times, averaged over noise draws, estimate its denoising
        loss under the model: lower means the model finds it more plausible (the diffusion ELBO up
        to weights), which ranks candidate structures of one composition.
        """
        d = self.config.diffusion
        coords0, lattice0, composition = batch["coords"], batch["lattice"].float(), batch["composition"].float()
        if d.reduce_cells:
            coords0, lattice0 = reduce_cells(coords0, lattice0)
        b, device = coords0.shape[0], coords0.device
        occupied = coords0[..., 0] > -0.5  # (B, L, 9, 18)
        natoms = natoms_of(composition)

        def rand(*shape):
            return torch.rand(shape, generator=generator, device=device)

        def randn(*shape):
            return torch.randn(shape, generator=generator, device=device)

        t = rand(b) ** d.time_power if t is None else t.to(device).float()  # (B,)
        sigma = self.sigma(t)
        eps_x = randn(*coords0.shape) if noise is None else noise[0].to(device)  # (B, L, 9, 18, 3)
        noisy = torch.remainder(coords0 + sigma.view(-1, 1, 1, 1, 1) * eps_x, 1.0)
        empty = rand(*coords0.shape) if noise is None else torch.remainder(eps_x, 1.0)  # empty slots: anything
        noisy = torch.where(occupied[..., None], noisy, empty)

        ab = self.alpha_bar(t)[:, None]  # (B, 1)
        z0 = self.scaler.encode(lattice0, natoms)  # (B, 6)
        eps_l = randn(b, 6) if noise is None else noise[1].to(device)
        z_t = ab.sqrt() * z0 + (1 - ab).sqrt() * eps_l

        occ_t = eps_o = None
        cond = composition
        if self.unconditional:
            occ0 = occupied.float() * 2 - 1  # (B, L, 9, 18)
            eps_o = randn(*occ0.shape)
            ab5 = ab.view(-1, 1, 1, 1)
            occ_t = ab5.sqrt() * occ0 + (1 - ab5).sqrt() * eps_o
            keep = (rand(b) >= d.cond_drop_prob).float().view(-1, 1, 1)
            cond = composition * keep

        extra = {}
        if self.spacegroup_conditioned:
            if spacegroup is None:
                extra["spacegroup"] = self._training_spacegroup(batch, b, device, rand)
            else:
                extra["spacegroup"] = spacegroup.to(device).long()
        out = self.network(noisy, z_t, t, cond, occupancy=occ_t, **extra)

        target_x = torch.zeros_like(coords0)
        if d.coord_target == "score":
            atom_sigma = sigma.view(-1, 1, 1, 1).expand_as(occupied)[occupied][:, None]  # (A, 1)
            disp = atom_sigma * eps_x[occupied]  # (A, 3)
            score = wrapped_normal_score(disp, atom_sigma.expand_as(disp), n_images=d.n_images)
            target_x[occupied] = score / self.score_rms(atom_sigma)
        else:
            target_x[occupied] = eps_x[occupied]
        weight = occupied.float()[..., None]  # (B, L, 9, 18, 1)
        coord = ((out.coords - target_x) ** 2 * weight).flatten(1).sum(1)  # (B,)
        n_coords = 3 * weight.flatten(1).sum(1)  # (B,)
        lattice = ((out.lattice - eps_l) ** 2).mean(1)  # (B,)
        occupancy = None
        if self.unconditional:
            cells = self.occupiable[None, None].float()  # (1, 1, 9, 18)
            occupancy = ((out.occupancy - eps_o) ** 2 * cells).flatten(1).sum(1) / (cells.sum() * self.n_slots)  # (B,)
        return DenoisingErrors(coord=coord, n_coords=n_coords, lattice=lattice, occupancy=occupancy)

    # ------------------------------------------------------------ sampling support

    def predict(
        self,
        coords: torch.Tensor,
        lattice: torch.Tensor,
        t: torch.Tensor,
        composition: torch.Tensor | None,
        *,
        occupancy: torch.Tensor | None = None,
        guidance: float = 1.0,
        spacegroup: torch.Tensor | None = None,
    ) -> NetworkOutput:
        """Network prediction with classifier-free guidance.

        ``guidance`` w gives ``uncond + w (cond - uncond)``: w = 0 is the unconditional network,
        w = 1 the conditional one. The condition is the composition for the dense network and the
        space group (``spacegroup`` (B,) int64, 0 = none) for an atom network built with
        ``spacegroup_condition``; an atom network without it has nothing to guide (callers refuse
        ``guidance`` != 1 there, see :attr:`guidable`).
        """
        if not self.unconditional:
            if not self.spacegroup_conditioned:
                return self.network(coords, lattice, t, composition)
            b = coords.shape[0]
            none = torch.zeros(b, dtype=torch.long, device=coords.device)
            if spacegroup is None or guidance == 0.0:
                return self.network(coords, lattice, t, composition, spacegroup=none)
            spacegroup = spacegroup.to(coords.device).long()
            if guidance == 1.0:
                return self.network(coords, lattice, t, composition, spacegroup=spacegroup)
            both = self.network(torch.cat([coords, coords]), torch.cat([lattice, lattice]), torch.cat([t, t]),
                                torch.cat([composition, composition]), spacegroup=torch.cat([spacegroup, none]))
            return _guided(both, guidance)
        if composition is None or guidance == 0.0:
            zeros = torch.zeros(coords.shape[0], *GRID_SHAPE, device=coords.device)
            return self.network(coords, lattice, t, zeros, occupancy=occupancy)
        if guidance == 1.0:
            return self.network(coords, lattice, t, composition, occupancy=occupancy)
        both = self.network(
            torch.cat([coords, coords]),
            torch.cat([lattice, lattice]),
            torch.cat([t, t]),
            torch.cat([composition, torch.zeros_like(composition)]),
            occupancy=torch.cat([occupancy, occupancy]),
        )
        return _guided(both, guidance)

    def occupied_slots(self, composition: torch.Tensor) -> torch.Tensor:
        """(B, L, 9, 18) bool slots a composition occupies."""
        return slot_mask(composition, self.n_slots)

    @torch.no_grad()
    def set_composition_prior(self, compositions: torch.Tensor) -> None:
        """Store the distinct compositions ``(N, 9, 18)`` of the training set as the empirical prior.

        Unconditional atom-network sampling draws a composition uniformly from these before the
        structure is sampled. Also marks their elements as seen.
        """
        grid = torch.as_tensor(compositions).round().to(torch.int16)
        if grid.ndim != 3 or tuple(grid.shape[1:]) != GRID_SHAPE:
            raise ValueError(f"compositions must have shape (N, 9, 18), got {tuple(grid.shape)}")
        unique = torch.unique(grid.flatten(1), dim=0).view(-1, *GRID_SHAPE)
        self.prior_compositions = unique.to(self.seen_elements.device)
        self.seen_elements |= (unique > 0).any(0).to(self.seen_elements.device)

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        """The composition prior is stored sparse (``.index``, ``.count``, ``.rows``): ~1 MB, not 20."""
        super()._save_to_state_dict(destination, prefix, keep_vars)
        key = prefix + "prior_compositions"
        dense = destination.pop(key).detach()  # (P, 9, 18) int16
        flat = dense.reshape(-1)
        index = flat.nonzero().squeeze(1)  # (nnz,) positions in the flattened (P, 9, 18) grid
        destination[key + ".index"] = index.to(torch.int64 if flat.numel() >= 2**31 else torch.int32)
        destination[key + ".count"] = flat[index].clone()  # (nnz,) int16
        destination[key + ".rows"] = torch.tensor(dense.shape[0], dtype=torch.int64)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        key = prefix + "prior_compositions"
        if key + ".index" in state_dict:  # the sparse form of _save_to_state_dict (older files: dense)
            index = state_dict.pop(key + ".index").long()
            count = state_dict.pop(key + ".count").to(torch.int16)
            rows = int(state_dict.pop(key + ".rows"))
            dense = torch.zeros(rows * GRID_SHAPE[0] * GRID_SHAPE[1], dtype=torch.int16)
            if len(index) and (index.min() < 0 or index.max() >= dense.numel() or len(index) != len(count)):
                raise RuntimeError(f"{key}: sparse composition prior out of range for {rows} rows")
            dense[index] = count
            state_dict[key] = dense.view(rows, *GRID_SHAPE)
        if key in state_dict:  # the prior's size is data dependent: take the stored one
            self.prior_compositions = torch.empty_like(state_dict[key], device=self.seen_elements.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def _guided(both: NetworkOutput, guidance: float) -> NetworkOutput:
    """``uncond + w (cond - uncond)`` of a prediction over a doubled batch (conditional half first)."""
    parts = [None if x is None else x.chunk(2) for x in both]
    return NetworkOutput(*(None if p is None else p[1] + guidance * (p[0] - p[1]) for p in parts))


def build_model(config: UniMatConfig) -> UniMatModel:
    """The model (network + diffusion) a config describes, freshly initialised."""
    return UniMatModel(config)
