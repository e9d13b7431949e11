"""The run directory of a search: its manifest and one finished record per seed, for resuming.

Layout of ``out/``::

    manifest.json           options that decide the results (a rerun must match them)
    records/<seed id>.json  one finished relaxation, ok or failed (written last: the commit mark)
    res/<seed id>.res       the relaxed structure of each successful seed (AIRSS format)
    ranked.csv, unique/     the ranking of the last run (rewritten by every run)
    .lock                   held (``fcntl.flock``) by the one process working on the directory

Every file is written to a temporary name and renamed into place, so a ``kill -9`` leaves either
the old file or the new one, never part of one. A seed counts as done once its JSON record
exists; its ``.res`` is written before the record, so a done seed always has its ``.res``.

The directory is owned: :meth:`RunStore.open` refuses a nonempty directory without a manifest
(it is someone else's), removes only temporary files of its own naming pattern inside its own
folders, and holds a lock that a second process is refused by, naming the holder's PID. The
operating system drops the lock when the holder dies, so a killed run leaves none stuck.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ase_unimat.core.atomic import atomic_write_text
from ase_unimat.search.airss_io import spacegroup_symbol, write_res
from ase_unimat.search.relax import RelaxResult

MANIFEST_FORMAT = "ase-unimat-airss-run/1"

#: The lock file inside a run directory.
LOCK_NAME = ".lock"

#: Temporary names of :func:`ase_unimat.core.atomic.atomic_path`: ``.<name>.<8 random chars>.tmp``.
_OWN_TMP = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp$")

#: Locks this process holds: resolved run directory -> [file descriptor, open count].
#: It must be process-global, not per RunStore: ``flock`` belongs to an open file description, so a
#: second ``RunStore`` of the same directory in this process (a Search reopened from one script,
#: ``Search.rank()`` taking the lock again) would be refused by its own process if it opened the lock
#: file again. All stores of a directory share the one descriptor here; the last ``close`` unlocks.
_HELD: dict[str, list[int]] = {}

#: Manifest keys that may differ between runs of the same directory (everything else must match).
MUTABLE_KEYS = ("n",)


def discard_empty_run(root: str | Path) -> bool:
    """Remove ``root`` if it holds nothing but a run's own scaffolding (manifests, locks, empty folders).

    For a run that failed before its first seed (a composition no source can build): the error
    then leaves no run directory behind. Returns whether ``root`` was removed; a directory with any
    other file (a record, a ``.res``, a user's file) is left alone.
    """
    root = Path(root)
    if not root.is_dir():
        return False
    entries = list(root.rglob("*"))
    files = [p for p in entries if not p.is_dir()]
    if any(p.name not in ("manifest.json", LOCK_NAME) for p in files):
        return False
    for path in files:
        path.unlink()
    for folder in sorted((p for p in entries if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        folder.rmdir()
    root.rmdir()
    return True


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
        self._locked = False

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    def open(self, manifest: Mapping[str, Any]) -> None:
        """Create the directory with ``manifest``, or check an existing one is compatible with it.

        Raises
        ------
        RunDirectoryError
            If the directory holds a search with other options (names each differing option), is
            nonempty without a manifest (not a run directory), or is locked by another process
            (names its PID). The lock is held until :meth:`close` or the end of the process.
        """
        manifest = {"format": MANIFEST_FORMAT, **json.loads(json.dumps(dict(manifest)))}
        if self.root.exists() and not self.root.is_dir():
            raise RunDirectoryError(f"{self.root} exists and is not a directory; use another --out")
        if not self.manifest_path.is_file() and self.root.is_dir() and any(self.root.iterdir()):
            raise RunDirectoryError(
                f"{self.root} exists and is not an unimat-airss run directory (nonempty, no manifest.json); "
                "use a new or empty --out"
            )
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock()
        try:
            self._open_locked(manifest)
        except BaseException:
            self.close()
            raise

    def _open_locked(self, manifest: dict[str, Any]) -> None:
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

    def close(self) -> None:
        """Release this object's hold on the run directory's lock (the last holder in the process unlocks)."""
        if not self._locked:
            return
        self._locked = False
        key = str(self.root.resolve())
        held = _HELD.get(key)
        if held is None:
            return
        held[1] -= 1
        if held[1] <= 0:
            del _HELD[key]
            os.close(held[0])  # closing the descriptor releases the flock

    def lock(self) -> None:
        """Take the directory's lock (released by :meth:`close`), or raise naming the process that holds it."""
        self._lock()

    def _lock(self) -> None:
        """Take the directory's lock, or raise naming the process that holds it."""
        if self._locked:
            return
        key = str(self.root.resolve())
        if key in _HELD:  # this process holds it already (e.g. a Search reopened from the same script)
            _HELD[key][1] += 1
            self._locked = True
            return
        import fcntl  # POSIX only; imported here so the module still imports elsewhere

        path = self.root / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise RunDirectoryError(
                f"{self.root} is in use by process {holder} (another unimat-airss on the same --out); "
                "wait for it to finish or use another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        _HELD[key] = [fd, 1]
        self._locked = True

    def _remove_leftovers(self) -> None:
        """Delete temporary files of this store's own interrupted writes (never complete or foreign files).

        Only names of the :func:`~ase_unimat.core.atomic.atomic_path` pattern for files the store
        writes: ``records/*.json``, ``res/*.res``, ``unique/*.res``, ``manifest.json``, ``ranked.csv``.
        """
        own = {
            self.records_dir: lambda name: name.endswith(".json"),
            self.res_dir: lambda name: name.endswith(".res"),
            self.root / "unique": lambda name: name.endswith(".res"),
            self.root: lambda name: name in ("manifest.json", "ranked.csv"),
        }
        for folder, is_own in own.items():
            if not folder.is_dir():
                continue
            for path in folder.glob(".*.tmp"):
                match = _OWN_TMP.match(path.name)
                if match and is_own(match.group("name")) and path.is_file():
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
