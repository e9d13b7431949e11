"""Tests of ase_unimat.core.messages: an error's message on one line."""

from __future__ import annotations

from ase_unimat.core.messages import one_line


def test_whitespace_collapses_to_single_spaces():
    assert one_line(ValueError("first line\n\n   second\tline  ")) == "first line second line"


def test_limit_cuts_after_collapsing():
    assert one_line(ValueError("a \n b " * 200), limit=5) == "a b a"


def test_an_empty_message_is_the_type_name_or_the_given_text():
    assert one_line(KeyError()) == "KeyError"
    assert one_line(OSError(""), empty="(no message)") == "(no message)"
    assert one_line(ValueError(" \n "), empty="") == ""
    assert one_line("  \n") == ""
