"""Fixtures of the training tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from trainer_fixtures import write_tiny_data


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("data")
    return {
        "train": write_tiny_data(folder / "train.h5", n=18, seed=1),
        "val": write_tiny_data(folder / "val.h5", n=6, seed=2),
    }

