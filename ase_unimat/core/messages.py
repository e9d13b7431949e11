"""An error's message on one line: the one helper every layer, the commands and the benchmarks quote errors with.

A foreign error (a parser's, a calculator's, the user's own code) may span lines or hold runs of
spaces; :func:`one_line` collapses all whitespace to single spaces, optionally cuts it to ``limit``
characters, and says something when nothing is left. Standard library only.
"""

from __future__ import annotations


def one_line(err: BaseException | str, *, limit: int | None = None, empty: str | None = None) -> str:
    """``err``'s message (or the text ``err``) with its whitespace collapsed to single spaces.

    Parameters
    ----------
    err
        The error, or a message already built.
    limit
        At most this many characters (cut after collapsing); ``None``: the whole message.
    empty
        What an empty message becomes; ``None``: the error's type name (``""`` for a text).
    """
    text = " ".join(str(err).split())
    if limit is not None:
        text = text[:limit]
    if text:
        return text
    if empty is not None:
        return empty
    return type(err).__name__ if isinstance(err, BaseException) else ""
