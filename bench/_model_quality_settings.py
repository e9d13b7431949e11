"""The model-quality benchmark's settings: :class:`QualitySettings`, the default and quick runs.

It owns what one run does -- how many test structures are sampled once and ``k`` times, how many
samples are relaxed for stability, the seed, the sampler and the relaxation settings -- with the
checks on them, ``DEFAULT`` (the quoted run) and ``QUICK`` (``--quick``), and ``MAX_K``, the samples
per structure that the seed formula leaves room for.
"""

from __future__ import annotations

from dataclasses import dataclass

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
