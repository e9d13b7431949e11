"""Fixtures of the benchmark tests: ``bench`` is imported from the repository root (it is not installed)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def bench_module(monkeypatch) -> Callable[[str], ModuleType]:
    """``bench_module("bench.x")``: module ``bench.x``, imported from the repository root for this test."""
    monkeypatch.syspath_prepend(str(REPO))
    return importlib.import_module
