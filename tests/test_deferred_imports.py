"""Every ``from ase_unimat... import name`` / ``from bench... import name`` in the tree resolves.

Function-level imports are only executed when their function runs, so a module that was split or
renamed can leave one behind that no import-time check sees (bench_de_novo's stability branch
imported ``ase_unimat.evaluation.stability`` after it became ``reference``/``hull``/``sun``). This
walks the syntax tree of every file and imports what each such statement names.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("ase_unimat", "cli", "bench", "examples")
PACKAGES = ("ase_unimat", "bench", "cli")


def _internal_imports() -> list[tuple[str, int, str, str | None]]:
    """(file, line, module, name or None) of every import of an internal module, at any depth."""
    found = []
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            relative = str(path.relative_to(ROOT))
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    if node.module.split(".")[0] in PACKAGES:
                        found += [(relative, node.lineno, node.module, alias.name) for alias in node.names]
                elif isinstance(node, ast.Import):
                    found += [(relative, node.lineno, alias.name, None) for alias in node.names
                              if alias.name.split(".")[0] in PACKAGES]  # fmt: skip
    return found


IMPORTS = _internal_imports()


def _is_submodule(package, name: str) -> bool:
    """``from package import name`` where ``name`` is a module of the package."""
    return hasattr(package, "__path__") and importlib.util.find_spec(f"{package.__name__}.{name}") is not None


def test_the_walk_finds_deferred_imports():
    assert len(IMPORTS) > 100
    assert any(module == "ase_unimat.evaluation.reference" for _, _, module, _ in IMPORTS)


@pytest.mark.parametrize("module", sorted({module for _, _, module, _ in IMPORTS}))
def test_internal_import_resolves(module, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    imported = importlib.import_module(module)
    missing = [f"{file}:{line} {name}" for file, line, mod, name in IMPORTS
               if mod == module and name not in (None, "*") and not hasattr(imported, name)
               and not _is_submodule(imported, name)]  # fmt: skip
    assert not missing, f"{module} has no " + ", ".join(missing)
