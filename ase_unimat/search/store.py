"""The run directory of a search: its manifest and one finished record per seed, for resuming.

Layout of ``out/``::

    manifest.json           options that decide the results (a rerun must match them)
    records/<seed id>.json  one finished relaxation, ok or failed (written last: the commit mark)
    res/<seed id>.res       the relaxed structure of each successful seed (AIRSS format)
    ranked.csv, unique/     the ranking of the last run (rewritten by every run)

Every file is written to a temporary name and renamed into place, so a ``kill -9`` leaves either
the old file or the new one, never part of one. A seed counts as done once its JSON record
exists; its ``.res`` is written before the record, so a done seed always has its ``.res``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ase_unimat.core.atomic import atomic_write_text
from ase_unimat.search.airss_io import spacegroup_symbol, write_res
from ase_unimat.search.relax import RelaxResult

MANIFEST_FORMAT = "ase-unimat-airss-run/1"

#: Manifest keys that may differ between runs of the same directory (everything else must match).
MUTABLE_KEYS = ("n",)


class RunDirectoryError(ValueError):
    """A run directory that belongs to a different search (incompatible options) or is unreadable."""


class RunStore:
    """Read and write one search's run directory.

    Parameters
    ----------
    root
        The run directory (created when missing).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.records_dir = self.root / "records"
        self.res_dir = self.root / "res"

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    def open(self, manifest: Mapping[str, Any]) -> None:
        """Create the directory with ``manifest``, or check an existing one is compatible with it.

        Raises
        ------
        RunDirectoryError
            If the directory holds a search with other options (names each differing option).
        """
        manifest = {"format": MANIFEST_FORMAT, **json.loads(json.dumps(dict(manifest)))}
        if self.manifest_path.is_file():
            old = self.read_manifest()
            was, now = _flat(old), _flat(manifest)
            differ = sorted(key for key in set(was) | set(now) if key not in MUTABLE_KEYS and was.get(key) != now.get(key))
            if differ:
                details = "; ".join(f"{k}: was {was.get(k)!r}, now {now.get(k)!r}" for k in differ)
                raise RunDirectoryError(
                    f"{self.root} holds a search with other options ({details}); use another --out or the same options"
                )
            manifest = {**manifest, "n": max(int(old.get("n", 0)), int(manifest.get("n", 0)))}
        self.records_dir.mkdir(parents=True, exist_ok=True)
        self.res_dir.mkdir(parents=True, exist_ok=True)
        self._remove_leftovers()
        atomic_write_text(self.manifest_path, json.dumps(manifest, indent=2, sort_keys=True) + "\n")

    def read_manifest(self) -> dict[str, Any]:
        """The stored manifest."""
        try:
            return json.loads(self.manifest_path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise RunDirectoryError(f"cannot read {self.manifest_path}: {err}") from None

    def finished_ids(self) -> set[str]:
        """Ids of the seeds with a finished record."""
        if not self.records_dir.is_dir():
            return set()
        return {p.stem for p in self.records_dir.glob("*.json")}

    def finished_indices(self) -> set[int]:
        """Seed indices with a finished record (from each record's ``seed_info["index"]``)."""
        return {int(record["seed_info"]["index"]) for record in self.records()}

    def save(self, result: RelaxResult, *, symprec: float = 0.1) -> dict[str, Any]:
        """Write the ``.res`` (successful seeds) and then the JSON record of ``result``; returns the record."""
        if result.ok:
            result.spacegroup = result.spacegroup or spacegroup_symbol(result.atoms, symprec=symprec)
            write_res(
                self.res_dir / f"{result.id}.res",
                result.atoms,
                name=result.id,
                pressure=result.pressure,
                enthalpy=result.enthalpy,
                spacegroup=result.spacegroup,
            )
        record = result.to_dict()
        atomic_write_text(self.records_dir / f"{result.id}.json", json.dumps(record) + "\n")
        return record

    def records(self) -> Iterator[dict[str, Any]]:
        """Every finished record, in id order."""
        for path in sorted(self.records_dir.glob("*.json")):
            try:
                yield json.loads(path.read_text())
            except (OSError, json.JSONDecodeError) as err:
                raise RunDirectoryError(f"cannot read record {path}: {err}") from None

    def results(self) -> list[RelaxResult]:
        """Every finished record as a :class:`RelaxResult`."""
        return [RelaxResult.from_dict(record) for record in self.records()]

    def _remove_leftovers(self) -> None:
        """Delete temporary files of writes interrupted by a kill (never complete files)."""
        for folder in (self.root, self.records_dir, self.res_dir):
            for path in folder.glob(".*.tmp"):
                path.unlink(missing_ok=True)


def _flat(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """Option tables one level down as dotted keys (``calculator_options.ecutwfc``), so a change is named."""
    out: dict[str, Any] = {}
    for key, value in manifest.items():
        if key.endswith("options") and isinstance(value, dict):
            out.update({f"{key}.{sub}": item for sub, item in value.items()})
        else:
            out[key] = value
    return out
