"""Issue 16, item 10: ``unimat-sample --out`` in a place it cannot write is one line, before any sampling."""

from __future__ import annotations

import pytest
from ase_unimat.cli.sample import main
from click.testing import CliRunner


@pytest.mark.parametrize("name", ["o.extxyz", "o.cif", "folder"])
def test_unwritable_out_is_one_line_before_sampling(tmp_path, monkeypatch, name):
    blocker = tmp_path / "a_file"
    blocker.write_text("user data")
    import ase_unimat.generation as generation

    def no_sampling(*args, **kwargs):
        raise AssertionError("sampled although the output cannot be written")

    monkeypatch.setattr(generation, "generate", no_sampling)
    out = blocker / name  # below a file: cannot be created, even by root
    result = CliRunner().invoke(main, ["--formula", "NaCl", "-n", "1", "--quiet", "--out", str(out)])
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:") and "cannot write" in lines[0], result.output
    assert blocker.read_text() == "user data"
