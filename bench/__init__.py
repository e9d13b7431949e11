"""The project's benchmarks and their runner (``python -m bench NAME [--quick]``).

Convention (see ``bench/README.md``): a benchmark is a module ``bench/bench_<name>.py`` (or any
module here not starting with ``_``) that defines

    def run(*, quick: bool, out_dir: pathlib.Path) -> dict

returning JSON-ready results. The runner calls it, adds run metadata (time, wall seconds, machine,
git commit) and writes ``<out_dir>/<name>.json`` (``<name>_quick.json`` with ``--quick``). A
benchmark may write its own extra files (PNG plots, a markdown summary) into ``out_dir``. One whose
``run`` also takes ``dry_run`` has a dry run (``--dry-run``: the same code at tiny sizes, e.g. a GPU
benchmark on the CPU), written to ``<name>_dry_run.json``.
"""

from __future__ import annotations

import datetime as dt
import importlib
import inspect
import json
import math
import os
import pkgutil
import platform
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
PREFIX = "bench_"


class BenchmarkError(ValueError):
    """An unknown benchmark, or a module that breaks the convention."""


def discover(package: str = "bench") -> dict[str, str]:
    """Benchmark name -> module name for every module of ``package`` that defines ``run``.

    Names are the module names with a leading ``bench_`` removed; modules starting with ``_`` are
    skipped. Modules are imported only to check for ``run``, so keep their top level light.
    """
    return scan(package)[0]


def scan(package: str = "bench") -> tuple[dict[str, str], dict[str, str]]:
    """(benchmarks as in :func:`discover`, module name -> why it is not a runnable benchmark)."""
    pkg = importlib.import_module(package)
    found: dict[str, str] = {}
    problems: dict[str, str] = {}
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name.startswith("_"):
            continue
        module_name = f"{package}.{info.name}"
        try:
            module = importlib.import_module(module_name)
        except Exception as err:  # noqa: BLE001 - one broken module must not hide the others
            problems[module_name] = f"import failed: {type(err).__name__}: {err}"
            continue
        if not callable(getattr(module, "run", None)):
            problems[module_name] = "no run(*, quick, out_dir) function (see bench/README.md)"
            continue
        name = info.name.removeprefix(PREFIX)
        if name in found:
            raise BenchmarkError(f"two benchmark modules are named {name!r}: {found[name]} and {module_name}")
        found[name] = module_name
    return dict(sorted(found.items())), problems


def describe(module_name: str) -> str:
    """First line of a benchmark module's docstring."""
    doc = importlib.import_module(module_name).__doc__ or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def run_benchmark(
    name: str,
    *,
    quick: bool = False,
    dry_run: bool = False,
    out_dir: Path | None = None,
    package: str = "bench",
    say: Callable[[str], None] = print,
) -> Path:
    """Run benchmark ``name`` and write its JSON; returns the JSON path."""
    benchmarks = discover(package)
    if name not in benchmarks:
        known = ", ".join(benchmarks) or "none"
        raise BenchmarkError(f"unknown benchmark {name!r}; known: {known}")
    out_dir = Path(out_dir) if out_dir is not None else RESULTS_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    module = importlib.import_module(benchmarks[name])
    extra = {}
    if dry_run:
        if "dry_run" not in inspect.signature(module.run).parameters:
            raise BenchmarkError(f"benchmark {name!r} has no dry run")
        extra["dry_run"] = True
    mode = "".join(label for flag, label in ((dry_run, " (dry run)"), (quick, " (quick)")) if flag)
    say(f"running {name}{mode} -> {out_dir}")
    started = dt.datetime.now(dt.UTC)
    start = time.perf_counter()
    result = module.run(quick=quick, out_dir=out_dir, **extra)
    if not isinstance(result, dict):
        raise BenchmarkError(f"benchmark {name!r} returned {type(result).__name__}, not a dict")
    record = {
        "benchmark": name,
        "quick": bool(quick),
        **({"dry_run": True} if dry_run else {}),
        "started_utc": started.isoformat(timespec="seconds"),
        "wall_s": round(time.perf_counter() - start, 2),
        "machine": machine_info(),
        "git_commit": git_commit(),
        "result": result,
    }
    path = out_dir / f"{name}{'_dry_run' if dry_run else ''}{'_quick' if quick else ''}.json"
    path.write_text(json.dumps(json_safe(record), indent=1) + "\n")
    say(f"{name}: {record['wall_s']:.1f} s, wrote {path}")
    return path


def json_safe(value: Any) -> Any:
    """Recursively convert numpy scalars/arrays, tuples and paths; NaN and inf become ``None``."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, str):  # numpy array or scalar
        return json_safe(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def machine_info() -> dict[str, Any]:
    """CPU count, platform, Python and thread settings of this run."""
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"),
    }


def git_commit() -> str:
    """The repository's HEAD commit (with ``+dirty`` when tracked files changed), or ``"unknown"``."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True)  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
