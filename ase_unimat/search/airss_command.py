"""What ``unimat-airss`` does with its options: the library side of ``cli/airss.py`` (which only parses and prints).

:func:`run_search` checks the ``run`` sub-command's options, builds the :class:`~ase_unimat.search.search.Search`
(on a Dask scheduler when ``scheduler`` is given), runs it and returns an :class:`AirssRun`, whose
:meth:`~AirssRun.summary` is what the command prints; :func:`rerank` is the ``report`` sub-command.
``options`` are the click parameters by name (``formula``, ``cell_file``, ``refine_top``, ...). A
mistake is a ``ValueError`` (an ``OSError`` or ``ImportError`` where a file or package is missing) naming
the command-line option, which the command prints on one line.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ase_unimat.search.calc_options import parse_assignments, read_config
from ase_unimat.search.rank import Ranking, format_table, rank, write_csv
from ase_unimat.search.refine import REFINE_DIR, format_refined_table, write_refined_csv
from ase_unimat.search.search import Search
from ase_unimat.search.store import RunStore

#: ``--refine-top`` when not given.
DEFAULT_REFINE_TOP = 5


@dataclass
class AirssRun:
    """A finished ``unimat-airss run``: the search, its final ranking and where it wrote."""

    search: Search
    ranking: Ranking
    out: Path
    calculator: str  # the first level's --calculator
    refine: str | None  # the second-level calculator, None for a one-level run
    refine_top: int
    plot: bool

    def summary(self) -> str:
        """The ranked table(s) and where the results are, as the command prints them."""
        if self.refine is None:
            lines = [format_table(self.ranking)]
        else:
            lines = ["first level:\n" + format_table(self.search.ranking, limit=self.refine_top),
                     "\n" + format_refined_table(self.ranking, calculator=self.refine, first_calculator=self.calculator)]  # fmt: skip
        refined = ", refine/" if self.refine is not None else ""
        lines.append(f"results in {self.out}/ (ranked.csv, res/, unique/{refined}{', report/' if self.plot else ''})")
        return "\n".join(lines)


def run_search(options: Mapping[str, Any], *, say: Callable[[str], Any] | None = None) -> AirssRun:
    """Run the search the ``run`` options describe; ``say`` gets one progress line per finished relaxation."""
    formula, cell_file = options["formula"], options["cell_file"]
    if (formula is None) == (cell_file is None):
        raise ValueError("give exactly one of --formula or --cell")
    label = Path(cell_file).stem if cell_file else "".join(formula.split())
    out = options["out"] or Path(f"airss_{label}")
    refine, refine_top = refine_choice(options)
    client = None
    try:
        calc_options, refine_options = calculator_options(options)
        executor = None
        workers = options["workers"]
        if options["scheduler"]:
            client, executor = dask_executor(options["scheduler"])
            workers = max(workers, sum(client.nthreads().values()))
        search = Search(
            cell_file if cell_file else formula,
            calculator=options["calculator"],
            calculator_options=calc_options,
            seeds=options["seeds"],
            n=options["n"],
            formula_units=options["formula_units"],
            pressure=options["pressure"],
            fmax=options["fmax"],
            max_steps=options["max_steps"],
            optimizer=options["optimizer"],
            time_limit=options["time_limit"],
            workers=workers,
            executor=executor,
            out=out,
            run_seed=options["run_seed"],
            model=options["model"],
            template_reference=options["template_reference"],
            unimat_strength=parse_strength(options["unimat_strength"]),
            ordered_templates=options["ordered_templates"],
            db=options["db"],
            plot=options["plot"],
            refine=refine,
            refine_options=refine_options if refine is not None else None,
            refine_top=refine_top,
            refine_settings=refine_settings(options) if refine is not None else None,
        )
        if say is not None:
            search.attach(lambda: say(progress_line(search)))
        ranking = search.run()
    finally:
        if client is not None:
            client.close()
    return AirssRun(search, ranking, out, options["calculator"], refine, refine_top, options["plot"])


def rerank(run_dir: Path, *, out: Path | None, top: int, say: Callable[[str], Any]) -> list[Path]:
    """Re-rank ``run_dir`` (and its ``refine/`` level), rewrite its CSVs, ``say`` the tables; the PNGs drawn."""
    from ase_unimat.search.report import make_report  # matplotlib: imported when a report is drawn

    store = RunStore(run_dir)
    if not store.manifest_path.is_file():
        raise ValueError(f"{run_dir} is not a unimat-airss run directory (no manifest.json)")
    ranking = rank(store.results())
    write_csv(ranking, run_dir / "ranked.csv")
    say(format_table(ranking, limit=top))
    refined = RunStore(run_dir / REFINE_DIR)
    if refined.manifest_path.is_file():
        manifest = refined.read_manifest()
        ranking = rank(refined.results())
        write_refined_csv(ranking, refined.root / "ranked.csv")
        say("\n" + format_refined_table(ranking, calculator=manifest.get("calculator", ""),
                                        first_calculator=manifest.get("first_calculator", "")))  # fmt: skip
    return make_report(run_dir, out=out)


def refine_settings(options: Mapping[str, Any]) -> dict[str, Any]:
    """The second level's relaxation settings that differ from the first's."""
    keys = {"refine_time_limit": "time_limit", "refine_max_steps": "max_steps"}
    return {field: options[name] for name, field in keys.items() if options[name] is not None}


def refine_choice(options: Mapping[str, Any]) -> tuple[str | None, int]:
    """(refine calculator or None, refine top) from the options, refusing half-given ones."""
    refine, top = options["refine"], options["refine_top"]
    if refine is not None and (not refine.strip() or refine.startswith("-")):
        raise ValueError("--refine needs a second calculator, e.g. --refine espresso")
    halves = {"--refine-top": top, "--refine-opt": options["refine_opts"] or None,
              "--refine-time-limit": options["refine_time_limit"], "--refine-max-steps": options["refine_max_steps"]}  # fmt: skip
    given = next((name for name, value in halves.items() if value is not None), None)
    if refine is None and given is not None:
        raise ValueError(f"{given} needs --refine CALC (the second-level calculator)")
    if top is not None and top < 1:
        raise ValueError(f"--refine-top must be >= 1 (structures to refine), got {top}")
    return refine, DEFAULT_REFINE_TOP if top is None else top


def calculator_options(options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(--calculator options, --refine options): the --calc-config tables overridden by --calc-opt / --refine-opt."""
    calc, refine = read_config(options["calc_config"]) if options["calc_config"] else ({}, {})
    for base, pairs in ((calc, options["calc_opts"]), (refine, options["refine_opts"])):
        for key, value in parse_assignments(pairs).items():
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                base[key] = {**base[key], **value}
            else:
                base[key] = value
    return calc, refine


def progress_line(search: Search) -> str:
    """The line about the relaxation ``search`` just finished (``search.last_result``)."""
    r = search.last_result
    status = f"H={r.enthalpy:.4f} eV {r.spacegroup or ''}" if r.ok else f"FAILED: {r.reason}"
    if r.seed_info.get("level") == 2:
        return f"[refine {len(search.refined)}] {r.id} {r.steps} steps {r.wall_time:.1f} s {status}"
    return f"[{len(search.results)}] {r.id} {r.steps} steps {r.wall_time:.1f} s {status}"


def dask_executor(address: str) -> tuple[Any, Any]:
    """(client, executor) of the Dask scheduler at ``address``."""
    try:
        from dask.distributed import Client  # optional: pip install '.[dask]'
    except ImportError:
        raise ImportError("--scheduler needs dask[distributed] (pip install 'dask[distributed]')") from None
    try:
        client = Client(address, timeout=20)
    except OSError as err:
        raise OSError(f"cannot reach Dask scheduler {address}: {err}") from None
    return client, client.get_executor()


def parse_strength(text: str | None) -> tuple[float, ...] | None:
    """``--unimat-strength 0.3,0.5`` as numbers (range checks happen in ``Search``)."""
    if text is None:
        return None
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"--unimat-strength must be numbers in (0, 1] separated by commas, got {text!r}") from None
