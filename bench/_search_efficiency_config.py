"""The search-efficiency benchmark's settings: :class:`BenchConfig` (default and quick), sources and the hit rule."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

BINS: dict[str, tuple[int, int]] = {"1-6": (1, 6), "7-12": (7, 12), "13-20": (13, 20)}

ENERGY_TOLERANCE = 0.005  # eV/atom above the reference still counted as a hit
PURE_SOURCES = ("unimat", "random", "template")  # what "mixed" mixes
SOURCE_ORDER = ("unimat", "unimat-template", "unimat-sym", "random", "random-sym", "template", "mixed")  # every source, in table order
MODEL_SOURCES = ("unimat", "unimat-template", "unimat-sym")  # load the UniMat model (probed when built, to fail early)
TEMPLATE_SOURCES = ("template", "unimat-template", "unimat-sym")  # need the template index over the training set
RATIOS = (
    ("unimat", "random"),
    ("unimat", "random-sym"),
    ("unimat", "template"),
    ("unimat-template", "random"),
    ("unimat-template", "random-sym"),
    ("unimat-template", "template"),
    ("unimat-sym", "random"),
    ("unimat-sym", "random-sym"),
    ("unimat-sym", "template"),
    ("template", "random"),
    ("mixed", "random"),
)
UNIMAT_OPTIONS = ("steps", "guidance", "sampler", "strength", "first_pass", "template_min_atoms", "spacegroup",
                  "volume", "start", "min_distance")  # --unimat-option
TEMPLATE_OPTIONS = ("ordered",)  # --template-option (both template-based sources)
DEFAULT_CACHE_DIR = Path(__file__).resolve().parent / ".cache" / "search_efficiency"
RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class BenchConfig:
    """What one run of the benchmark does (``DEFAULT`` and ``QUICK`` below)."""

    per_bin: int = 4
    n_seeds: int = 10
    sources: tuple[str, ...] = ("unimat", "unimat-template", "random", "random-sym", "template", "mixed")
    selection_seed: int = 2024
    run_seed: int = 0
    workers: int = 2
    calculator: str = "chgnet"
    fmax: float = 0.05
    max_steps: int = 500
    time_limit: float | None = None  # wall seconds per seed; None keeps results independent of machine load
    model: str | None = None  # UniMat model (None: the bundled default)
    data_dir: str | None = None  # shared data (None: $UNIMAT_SHARED_DATA or ../shared/data)
    bins: tuple[str, ...] = tuple(BINS)
    cache_dir: str | None = None  # relaxation cache (None: DEFAULT_CACHE_DIR; "": no cache)
    unimat_options: tuple[tuple[str, Any], ...] = ()  # (name, value) options of the UniMat sources (variants)
    template_options: tuple[tuple[str, Any], ...] = ()  # (name, value) options of both template-based sources
    # the templates: None = the training set of the default model (mp_20/train + extra MP, 6k, filtered to
    # the targets); "model" = the reference.h5 shipped beside --model; else an HDF5 file or CIF folder
    template_reference: str | None = None

    def __post_init__(self) -> None:
        unknown = [name for name, _ in self.unimat_options if name not in UNIMAT_OPTIONS]
        if unknown:
            raise ValueError(f"unknown UniMat option(s) {unknown}; choose from {', '.join(UNIMAT_OPTIONS)}")
        unknown = [name for name, _ in self.template_options if name not in TEMPLATE_OPTIONS]
        if unknown:
            raise ValueError(f"unknown template option(s) {unknown}; choose from {', '.join(TEMPLATE_OPTIONS)}")
        unknown = [name for name in self.sources if name not in SOURCE_ORDER]
        if unknown or not self.sources:
            raise ValueError(f"unknown or no seed sources {unknown}; choose from {', '.join(SOURCE_ORDER)}")
        unknown = [name for name in self.bins if name not in BINS]
        if unknown or not self.bins:
            raise ValueError(f"unknown or no size bins {unknown}; choose from {', '.join(BINS)}")

    def template_kwargs(self) -> dict[str, Any]:
        """``template_options`` as keyword options of ``TemplateSeedSource`` (``ordered`` as a bool)."""
        out = dict(self.template_options)
        if "ordered" in out:
            out["ordered"] = str(out["ordered"]).strip().lower() in ("1", "true", "yes", "on")
        return out


DEFAULT = BenchConfig()
QUICK = BenchConfig(per_bin=1, n_seeds=3)
