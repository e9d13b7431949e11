"""Issue 16, item 10: ``unimat-train --out`` in a place it cannot write is one line, no traceback."""

from __future__ import annotations

from ase_unimat.cli.train import main
from click.testing import CliRunner


def test_unwritable_out_is_one_line(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("user data")
    result = CliRunner().invoke(main, ["cpu", "--out", str(blocker / "run"), "--quiet"])
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:") and "cannot write" in lines[0], result.output
    assert blocker.read_text() == "user data"
