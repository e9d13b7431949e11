"""What a conversion is asked and what it answers: ``ConvertOptions``, property column specs, ``ConvertSummary``, ``ConversionError``.

Owns the options of :func:`ase_unimat.data.convert.convert` (``unimat-convert``'s flags), the
``--columns`` spec (``"a,b=c|d"``: stored name, source columns in order of preference) and its
parser, the summary a run returns (counts over the whole run, resumed parts included) and the one
error a conversion raises when it cannot run as asked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


class ConversionError(RuntimeError):
    """A conversion that cannot run as asked (bad inputs or options, a conflicting output or journal)."""


@dataclass(frozen=True)
class ColumnSpec:
    """A property column: stored as ``name``, read from the first of ``sources`` a record has."""

    name: str
    sources: tuple[str, ...]


def parse_columns(text: str) -> tuple[ColumnSpec, ...]:
    """Parse ``"a,b=c|d"``: column ``a`` from source column ``a``; column ``b`` from ``c`` or else ``d``."""
    specs = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, equals, sources = item.partition("=")
        name = name.strip()
        alternatives = tuple(s.strip() for s in (sources if equals else name).split("|") if s.strip())
        if not re.fullmatch(r"[A-Za-z0-9_.\-]+", name) or not alternatives:
            raise ConversionError(f"bad column spec {item!r}: use NAME or NAME=SOURCE[|SOURCE...]")
        specs.append(ColumnSpec(name, alternatives))
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ConversionError(f"column named twice in {text!r}")
    return tuple(specs)


@dataclass(frozen=True)
class ConvertOptions:
    """Options of :func:`~ase_unimat.data.convert.convert` (see ``unimat-convert --help``)."""

    n_slots: int = 20
    max_atoms: int = 20
    columns: tuple[ColumnSpec, ...] = ()
    workers: int = 1
    append: bool = False
    overwrite: bool = False
    dedup: bool = False
    exclude: tuple[str, ...] = ()
    exclude_formulas: tuple[str, ...] = ()
    batch_size: int = 512
    progress: bool = False


@dataclass
class ConvertSummary:
    """What a conversion did (counts cover the whole run, including parts done before a resume)."""

    output: str
    skipped_report: str
    records: int
    converted: int
    skipped: dict[str, int]
    seconds: float
    resumed_at: int = 0
    already_done: bool = False
    notes: list[str] = field(default_factory=list)
    #: One message per input that could not be read to its end (skip reason ``unreadable``): the
    #: file, how many of its records were read, and the error. What was read is in the output.
    unreadable: list[str] = field(default_factory=list)

    def text(self) -> str:
        """Human-readable summary lines."""
        if self.already_done:
            head = f"{self.output} already holds this conversion (run recorded in its history); nothing to do"
        else:
            rate = (self.records - self.resumed_at) / self.seconds if self.seconds > 0 else 0.0
            head = f"{self.records} records read in {self.seconds:.1f} s ({rate:.0f} records/s)"
            if self.resumed_at:
                head += f", resumed after record {self.resumed_at}"
        lines = [head, f"converted: {self.converted} -> {self.output}"]
        n_skipped = sum(self.skipped.values())
        detail = ", ".join(f"{k} {v}" for k, v in sorted(self.skipped.items(), key=lambda kv: -kv[1]))
        lines.append(f"skipped: {n_skipped}" + (f" ({detail}) -> {self.skipped_report}" if n_skipped else ""))
        lines.extend(self.notes)
        return "\n".join(lines)
