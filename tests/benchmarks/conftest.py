"""Fixtures of the benchmark tests: ``bench`` is imported from the repository root (it is not installed)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]


def _importer(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], ModuleType]:
    monkeypatch.syspath_prepend(str(REPO))
    return importlib.import_module


@pytest.fixture
def bench_module(monkeypatch) -> Callable[[str], ModuleType]:
    """``bench_module("bench.x")``: module ``bench.x``, imported from the repository root for this test."""
    return _importer(monkeypatch)


@pytest.fixture(scope="module")
def bench_module_once() -> Iterator[Callable[[str], ModuleType]]:
    """:func:`bench_module` for module-scoped fixtures: the repository root is on the path for the whole module."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield _importer(monkeypatch)
