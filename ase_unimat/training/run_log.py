"""The run's ``log.jsonl``: one JSON object per log, validation or warm-start event, appended by rank 0.

Owns the file name, appending a record, and trimming the lines past the resumed step (written by
a run killed after its last checkpoint), so that a resumed run's log reads as an uninterrupted one's.
"""

from __future__ import annotations

import json
from pathlib import Path

from ase_unimat.core.atomic import atomic_write_text

LOG_NAME = "log.jsonl"


def append_record(out_dir: Path, record: dict) -> None:
    """Append ``record`` as one JSON line to ``out_dir/log.jsonl``."""
    with open(out_dir / LOG_NAME, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


def trim_log(out_dir: Path, step: int) -> None:
    """Drop the lines of ``out_dir/log.jsonl`` past ``step`` (atomically; no file, nothing to do)."""
    path = out_dir / LOG_NAME
    if not path.is_file():
        return
    kept = [line for line in path.read_text(encoding="utf-8").splitlines() if _log_step(line) <= step]
    atomic_write_text(path, "".join(line + "\n" for line in kept))


def _log_step(line: str) -> int:
    try:
        return int(json.loads(line).get("step", 0))
    except (ValueError, AttributeError):
        return 0
