"""The vocabulary every layer shares: the periodic-table grid, formulas, the UniMat representation, geometry, atomic writes.

Owns ``periodic_table`` (the 9 x 18 grid), ``formula`` (parsing, labels, formula-unit ranges),
``representation`` (encode / decode of the ``(L, 9, 18, 3)`` tensor), ``geometry`` (atom counts,
shortest distance), ``atomic`` (the one atomic file write) and ``messages`` (an error's message on
one line, :func:`~ase_unimat.core.messages.one_line`). It may import numpy and ase
(pymatgen only inside the functions that build a ``Structure``); never torch nor any other
``ase_unimat`` package.
"""
