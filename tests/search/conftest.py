"""Fixtures of the search tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest

_AL_CELL = """\
%BLOCK LATTICE_CART
2 0 0
0 2 0
0 0 2
%ENDBLOCK LATTICE_CART

%BLOCK POSITIONS_FRAC
Al 0.0 0.0 0.0 # Al1 % NUM={num}
%ENDBLOCK POSITIONS_FRAC

#MINSEP={minsep}
"""


@pytest.fixture
def al_cell() -> Callable[[int, float], str]:
    """``al_cell(num, minsep)``: the text of AIRSS's Al example seed file, ``num`` Al atoms in a fixed 2 A cube."""

    def text(num: int, minsep: float) -> str:
        return _AL_CELL.format(num=num, minsep=minsep)

    return text
