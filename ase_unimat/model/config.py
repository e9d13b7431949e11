"""Dataclass configs of a UniMat model and its training run, loaded from TOML.

One :class:`UniMatConfig` holds three flat sections, mirroring the TOML file::

    name = "cpu"
    [model]       # the network: which one, widths, depths
    [diffusion]   # schedules, noise ranges, targets, guidance, lattice statistics
    [train]       # data, optimiser, schedule, checkpoints

Every checkpoint stores ``to_dict(config)``, so a model rebuilds from its file alone
(``from_dict``). Unknown keys are an error (a typo must not silently fall back to a default).
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NETWORKS = ("atoms", "dense")
LATTICE_SCHEDULES = ("cosine", "linear")
COORD_TARGETS = ("score", "eps")

# Standardisation of the lattice features (log(a/N^1/3), log(b/N^1/3), log(c/N^1/3), alpha, beta,
# gamma in degrees) of the reduced cells (ase_unimat.model.cell_reduction) of the 6,045 training
# structures in /work/data/train_full.h5 (mp_20/train + extra MP, <= 20 atoms). For unreduced cells
# (reduce_cells = false) measure and set your own: there the angle spread is about 25 degrees.
LATTICE_MEAN = (0.848, 0.9737, 1.2587, 93.7421, 91.522, 90.1856)
LATTICE_STD = (0.2557, 0.2319, 0.3098, 17.2306, 15.0797, 19.3947)


class ConfigError(ValueError):
    """A config file or dict with unknown keys, wrong types or impossible values."""


@dataclass
class ModelConfig:
    """The network. ``atoms``: atom-scaled (cost grows with atoms); ``dense``: the paper's grid network."""

    network: str = "atoms"
    n_slots: int = 20  # L, slots per element
    width: int = 128  # token / channel width
    depth: int = 4  # number of blocks
    heads: int = 4  # attention heads (dense network)
    dropout: float = 0.0
    time_dim: int = 64  # sinusoidal time-embedding size
    # atom network
    pair_width: int = 64  # width of the pair messages
    fourier_k: int = 4  # sin/cos(2 pi k df), k = 1..K
    n_rbf: int = 16  # radial basis functions of the minimum-image distance
    rbf_cutoff: float = 8.0  # Angstrom
    max_grid_offset: int = 3  # clip |d row|, |d group| of the pair grid-offset embedding
    slot_embedding: bool = True
    # an auxiliary condition the network can drop (classifier-free guidance): the space group
    # number 1-230 of the training structure (0 = unknown or dropped); dropped with probability
    # diffusion.cond_drop_prob in training
    spacegroup_condition: bool = False
    # dense network
    conv_kernel: int = 3
    plane_attention: bool = True  # attention over the flattened 9 x 18 plane (else along period and group)


@dataclass
class DiffusionConfig:
    """Noise schedules, prediction targets and guidance."""

    sigma_min: float = 0.005  # wrapped-normal coordinate noise at t -> 0
    sigma_max: float = 0.5  # ... at t = 1 (0.5 is close to uniform on the torus)
    n_images: int = 3  # periodic images +-n in the wrapped-normal score
    coord_target: str = "score"  # "score": normalised wrapped-normal score; "eps": the wrapped noise
    reduce_cells: bool = True  # train on reduced cells (ase_unimat.model.cell_reduction)
    lattice_schedule: str = "cosine"  # VP schedule of lattice (and dense occupancy) diffusion
    beta_min: float = 1e-4  # linear schedule
    beta_max: float = 0.02
    time_power: float = 1.0  # training times t = u^p, u uniform: p > 1 trains low noise levels more
    timesteps: int = 1000  # discretisation of the training time and default ancestral steps
    coord_weight: float = 1.0
    lattice_weight: float = 1.0
    occupancy_weight: float = 1.0  # dense network only
    cond_drop_prob: float = 0.1  # classifier-free guidance: P(condition dropped) in training
    default_steps: int = 50  # the search's UniMat seeds; generate() defaults to generate.DEFAULT_STEPS
    default_guidance: float = 1.0
    corrector_steps: int = 1  # Langevin corrector steps per ancestral step (torus part)
    corrector_step: float = 0.4  # Langevin step size as a fraction of sigma^2
    lattice_mean: list[float] = field(default_factory=lambda: list(LATTICE_MEAN))
    lattice_std: list[float] = field(default_factory=lambda: list(LATTICE_STD))


@dataclass
class TrainConfig:
    """The training run (read by the trainer; the model ignores it), stored in every checkpoint.

    ``batch_size`` is per process (the global batch is ``batch_size * world_size``); ``total_steps``
    counts optimiser steps and sets the length of the cosine decay, which ends at
    ``lr * min_lr_ratio``; ``keep_every = 0`` keeps only the last checkpoint; ``val_every = 0``
    disables validation and ``val_batches = 0`` validates on the whole file; ``num_workers = -1``
    means 0 on CPU and 4 per GPU; ``num_threads = 0`` means ``OMP_NUM_THREADS`` where it is set, else the CPU cores divided by
    the processes on this node. ``train_data`` is one HDF5 file or a list of them (concatenated).
    """

    train_data: str | list[str] = field(default="/work/data/mp20_train.h5", metadata={"paths": True})
    val_data: str = "/work/data/mp20_val.h5"
    out_dir: str = "runs/unimat"
    batch_size: int = 64
    lr: float = 1e-3
    min_lr_ratio: float = 0.05
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    warmup_steps: int = 200
    total_steps: int = 20000
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    checkpoint_every: int = 500
    keep_every: int = 0
    val_every: int = 500
    val_batches: int = 0
    log_every: int = 50
    seed: int = 0
    num_workers: int = 0
    num_threads: int = 0
    in_memory: bool = True  # read the HDF5 files into memory once (else per item)
    permute_slots: bool = True  # within-element permutation augmentation
    bf16: bool = False  # bfloat16 autocast (CUDA or CPU)
    compile: bool = False  # torch.compile on CUDA
    find_unused_parameters: bool = False  # DDP, for networks with parameters a step may not use
    device: str = "auto"
    # warm start: an exported model.pt (or a trainer checkpoint) whose EMA weights start both the model
    # and the EMA, with a fresh optimiser and LR schedule; ignored when the run resumes its own checkpoint
    init_from: str = ""

    @property
    def train_files(self) -> tuple[str, ...]:
        """The training HDF5 files, empty names dropped."""
        paths = [self.train_data] if isinstance(self.train_data, str | os.PathLike) else list(self.train_data)
        return tuple(str(path) for path in paths if str(path))

    def with_overrides(self, **overrides: Any) -> TrainConfig:
        """A checked copy with ``overrides`` (those not None) on top; unknown names raise ``ConfigError``."""
        names = {f.name: f for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - set(names))
        if unknown:
            raise ConfigError(f"unknown training option(s): {', '.join(unknown)}")
        defaults = TrainConfig()
        values = {
            name: _coerce(value, getattr(defaults, name), f"train.{name}", paths=bool(names[name].metadata.get("paths")))
            for name, value in overrides.items() if value is not None
        }
        resolved = dataclasses.replace(self, **values)
        resolved.check()
        return resolved

    def check(self) -> None:
        """Raise :class:`ConfigError` naming the first option no training run can use."""
        if not self.train_files:
            raise ConfigError("config.train names no training data (train_data)")
        for name in ("batch_size", "total_steps", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("warmup_steps", "val_every", "val_batches", "keep_every", "num_threads"):
            if getattr(self, name) < 0:
                raise ConfigError(f"train.{name} must be >= 0, got {getattr(self, name)}")
        if self.lr <= 0 or not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError(f"need lr > 0 and 0 <= min_lr_ratio <= 1, got {self.lr}, {self.min_lr_ratio}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"train.betas must be two numbers in [0, 1), got {self.betas}")
        if not 0 <= self.ema_decay < 1:
            raise ConfigError(f"train.ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"train.device must be 'auto', 'cpu' or 'cuda', got {self.device!r}")


@dataclass
class UniMatConfig:
    """A UniMat model and its training run."""

    name: str = "unimat"
    model: ModelConfig = field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        validate(self)


_SECTIONS = {"model": ModelConfig, "diffusion": DiffusionConfig, "train": TrainConfig}


def validate(config: UniMatConfig) -> None:
    """Raise :class:`ConfigError` for values no model can be built from."""
    m, d = config.model, config.diffusion
    if m.network not in NETWORKS:
        raise ConfigError(f"model.network must be one of {NETWORKS}, got {m.network!r}")
    if d.lattice_schedule not in LATTICE_SCHEDULES:
        raise ConfigError(f"diffusion.lattice_schedule must be one of {LATTICE_SCHEDULES}, got {d.lattice_schedule!r}")
    if d.coord_target not in COORD_TARGETS:
        raise ConfigError(f"diffusion.coord_target must be one of {COORD_TARGETS}, got {d.coord_target!r}")
    for name in ("n_slots", "width", "pair_width", "depth", "heads", "time_dim", "fourier_k", "n_rbf"):
        if getattr(m, name) < 1:
            raise ConfigError(f"model.{name} must be >= 1, got {getattr(m, name)}")
    if m.width % m.heads or (m.network == "atoms" and m.pair_width % m.heads):
        raise ConfigError(f"model.width ({m.width}) and pair_width ({m.pair_width}) must be divisible by heads ({m.heads})")
    if not 0 < d.sigma_min < d.sigma_max:
        raise ConfigError(f"need 0 < sigma_min < sigma_max, got {d.sigma_min}, {d.sigma_max}")
    if d.time_power <= 0:
        raise ConfigError(f"diffusion.time_power must be > 0, got {d.time_power}")
    if not 0.0 <= d.cond_drop_prob < 1.0:
        raise ConfigError(f"diffusion.cond_drop_prob must be in [0, 1), got {d.cond_drop_prob}")
    if len(d.lattice_mean) != 6 or len(d.lattice_std) != 6 or min(d.lattice_std) <= 0:
        raise ConfigError("diffusion.lattice_mean / lattice_std must be 6 numbers (std > 0)")


def to_dict(config: UniMatConfig) -> dict[str, Any]:
    """Plain nested dict (what checkpoints store)."""
    return dataclasses.asdict(config)


def from_dict(data: dict[str, Any]) -> UniMatConfig:
    """Rebuild a config from :func:`to_dict` output or a parsed TOML file; unknown keys raise."""
    if not isinstance(data, dict):
        raise ConfigError(f"config must be a mapping, got {type(data).__name__}")
    allowed = {"name", *_SECTIONS}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(f"unknown config keys {unknown}; allowed top-level keys: {sorted(allowed)}")
    sections = {}
    for key, cls in _SECTIONS.items():
        sections[key] = _section(cls, data.get(key, {}), key)
    name = data.get("name", "unimat")
    if not isinstance(name, str):
        raise ConfigError(f"name must be a string, got {name!r}")
    return UniMatConfig(name=name, **sections)


def _section(cls, values: Any, key: str):
    if not isinstance(values, dict):
        raise ConfigError(f"[{key}] must be a table, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"unknown keys in [{key}]: {unknown}; allowed: {sorted(fields)}")
    defaults = cls()
    checked = {}
    for name, value in values.items():
        paths = bool(fields[name].metadata.get("paths"))
        checked[name] = _coerce(value, getattr(defaults, name), f"{key}.{name}", paths=paths)
    return cls(**checked)


def _coerce(value: Any, default: Any, where: str, *, paths: bool = False) -> Any:
    """``value`` checked against the type of the field's default (ints are accepted for floats).

    ``paths``: a string field that also takes a list of strings (file names; paths become strings).
    """
    if paths:
        if isinstance(value, str | os.PathLike):
            return str(value)
        if not isinstance(value, list | tuple) or not all(isinstance(v, str | os.PathLike) for v in value):
            raise ConfigError(f"{where} must be a path or a list of paths, got {value!r}")
        return [str(v) for v in value]
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true/false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if isinstance(default, str):
        if isinstance(value, os.PathLike):
            return str(value)
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    if isinstance(default, list):
        if not isinstance(value, list | tuple) or not all(isinstance(v, int | float) for v in value):
            raise ConfigError(f"{where} must be a list of numbers, got {value!r}")
        return [float(v) for v in value]
    return value


def load_config(path: str | Path) -> UniMatConfig:
    """Read a TOML config file (see ``models/configs/``)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    with path.open("rb") as fh:
        try:
            data = tomllib.load(fh)
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:  # not TOML, or not UTF-8 text at all
            raise ConfigError(f"{path}: invalid TOML: {err}") from None
    try:
        return from_dict(data)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def configs_dir() -> Path:
    """The folder of the shipped training configs (``models/configs``)."""
    here = Path(__file__).resolve().parents[1]  # ase_unimat/
    for candidate in (here.parent / "models" / "configs", here / "_models" / "configs"):
        if candidate.is_dir():
            return candidate
    raise ConfigError("models/configs not found next to the package")


def named_config(name: str) -> UniMatConfig:
    """Load a shipped config by name (``"test"``, ``"cpu"``, ``"gpu"``) or by path."""
    path = Path(name)
    if path.suffix == ".toml" or path.exists():
        return load_config(path)
    return load_config(configs_dir() / f"{name}.toml")
