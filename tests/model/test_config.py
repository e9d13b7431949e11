"""Tests of ase_unimat.model.config: defaults, TOML files, round trips and clear errors."""

from __future__ import annotations

import dataclasses

import pytest

from ase_unimat.model.config import (
    ConfigError,
    UniMatConfig,
    configs_dir,
    from_dict,
    load_config,
    named_config,
    to_dict,
)


def test_defaults_round_trip():
    config = UniMatConfig()
    data = to_dict(config)
    assert data == dataclasses.asdict(config)
    assert from_dict(data) == config


@pytest.mark.parametrize("name", ["test", "cpu", "gpu"])
def test_shipped_configs_load_and_round_trip(name):
    config = named_config(name)
    assert config.name == name
    assert from_dict(to_dict(config)) == config


def test_gpu_config_is_dense_and_cpu_config_is_atoms():
    assert named_config("gpu").model.network == "dense"
    assert named_config("cpu").model.network == "atoms"
    assert (configs_dir() / "cpu.toml").is_file()


def test_toml_file_overrides_defaults(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('name = "x"\n[model]\nwidth = 48\n[train]\nlr = 1\n')
    config = load_config(path)
    assert config.model.width == 48
    assert config.train.lr == 1.0 and isinstance(config.train.lr, float)
    assert config.model.depth == UniMatConfig().model.depth


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"modle": {}}, "unknown config keys"),
        ({"model": {"widht": 3}}, r"unknown keys in \[model\]"),
        ({"model": {"width": "big"}}, "model.width must be an integer"),
        ({"model": {"network": "cnn"}}, "model.network must be one of"),
        ({"train": {"bf16": 1}}, "train.bf16 must be true/false"),
        ({"diffusion": {"sigma_min": 0.9}}, "sigma_min < sigma_max"),
        ({"diffusion": {"lattice_std": [1, 2]}}, "lattice_mean / lattice_std"),
        ({"model": {"width": 30, "heads": 4}}, "divisible"),
    ],
)
def test_bad_configs_raise_clear_errors(data, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(data)


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[model\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(bad)
