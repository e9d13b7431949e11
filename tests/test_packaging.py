"""How the project installs: `cli/` lands as `ase_unimat.cli`, never as a top-level `cli` package,
and the bundled model travels with the package."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from importlib import metadata

import pytest

import ase_unimat

COMMANDS = ("unimat-airss", "unimat-convert", "unimat-eval", "unimat-sample", "unimat-train")


def test_cli_is_a_subpackage_not_a_top_level_package():
    assert importlib.util.find_spec("ase_unimat.cli") is not None
    if importlib.util.find_spec("cli") is not None:
        origin = importlib.util.find_spec("cli").origin or ""
        pytest.fail(f"a top-level 'cli' package is importable from {origin}")


def test_console_scripts_point_into_the_package():
    scripts = {ep.name: ep.value for ep in metadata.entry_points(group="console_scripts")
               if ep.name.startswith("unimat-")}
    assert set(COMMANDS) <= set(scripts)
    for value in scripts.values():
        assert value.startswith("ase_unimat.cli.")


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_answers_help_quickly_without_torch(command, tmp_path):
    module = metadata.entry_points(group="console_scripts")[command].value.split(":")[0]
    code = (f"import sys; from {module} import main; "
            "sys.argv = ['x', '--help']\ntry:\n    main()\nexcept SystemExit as e:\n    code = e.code\n"
            "assert 'torch' not in sys.modules, 'help imported torch'\nsys.exit(code)")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Usage" in done.stdout and "Example" in done.stdout


def test_bundled_model_ships_with_the_package():
    from ase_unimat.model.bundled import DEFAULT_MODEL, models_dirs

    found = [d / DEFAULT_MODEL / "model.pt" for d in models_dirs() if (d / DEFAULT_MODEL / "model.pt").is_file()]
    assert found, f"no {DEFAULT_MODEL}/model.pt next to {ase_unimat.__file__}"


def test_every_subpackage_is_listed_for_installation():
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    listed = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {"ase_unimat." + ".".join(p.parent.relative_to(root / "ase_unimat").parts)
             for p in (root / "ase_unimat").glob("*/**/__init__.py")}  # fmt: skip
    assert found - listed == set(), "subpackages a non-editable install would leave out"
