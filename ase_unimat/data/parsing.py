"""Parsing one raw record into a structure: :func:`parse` (any kind) and :func:`parse_cif`.

The slow half of reading, run in the converter's worker processes. A simple P1 CIF goes through the
fast reader of :mod:`~ase_unimat.data.cif_p1` (into ``ase.Atoms``), any other CIF through pymatgen
(a ``Structure``); ``.res`` and XYZ frames through ase. A failure never escapes: it becomes the
record's :class:`~ase_unimat.data.records.RecordError` (``parse_error``, ``unknown_element``,
``too_many_atoms``).
"""

from __future__ import annotations

import io
import warnings

from ase.io import read
from ase.io.res import Res

from ase_unimat.core.messages import one_line
from ase_unimat.data.cif_p1 import NotSimpleCif, TooManySites, parse_p1_cif
from ase_unimat.data.records import RawRecord, Record, RecordError, atoms_properties


def parse(raw: RawRecord, *, max_atoms: int | None = None) -> Record:
    """Parse one raw record; failures become a :class:`RecordError` in ``structure_or_error``.

    With ``max_atoms``, a simple P1 CIF with more sites is refused (``too_many_atoms``) before
    any work that grows with the square of the atom count.
    """
    try:
        structure = _parse_payload(raw, max_atoms=max_atoms)
    except RecordError as err:
        return Record(raw.record_id, err, raw.properties, raw.source)
    except Exception as err:  # noqa: BLE001 - any parser failure is this record's problem only
        return Record(raw.record_id, RecordError("parse_error", one_line(err, limit=300)), raw.properties, raw.source)
    record_id = raw.record_id
    if raw.kind == "xyz":  # ids and properties of extxyz frames live in the parsed comment line
        record_id = str(structure.info.get("material_id", structure.info.get("id", record_id)))
        return Record(record_id, structure, {**atoms_properties(structure), **raw.properties}, raw.source)
    return Record(record_id, structure, raw.properties, raw.source)


def _parse_payload(raw: RawRecord, *, max_atoms: int | None = None):
    if raw.kind == "error":
        raise raw.payload
    if raw.kind == "atoms":
        return raw.payload
    if raw.kind == "cif":
        return parse_cif(raw.payload, max_atoms=max_atoms)
    try:
        if raw.kind == "res":
            return Res.from_string(raw.payload).atoms
        if raw.kind == "xyz":
            return read(io.StringIO(raw.payload), format="extxyz")
    except KeyError as err:  # ase looks chemical symbols up in a dict
        raise RecordError("unknown_element", f"unknown element symbol {err}") from None
    raise ValueError(f"unknown record kind {raw.kind!r}")


def parse_cif(text: str, *, fast: bool = True, max_atoms: int | None = None):
    """The crystal of the first data block of a CIF, as written (no primitive reduction).

    With ``fast``, a simple P1 CIF is read by :func:`ase_unimat.data.cif_p1.parse_p1_cif` (into
    ``ase.Atoms``); everything else, or every CIF without ``fast``, by pymatgen (a ``Structure``).
    With ``max_atoms``, a simple P1 CIF of more sites raises ``RecordError("too_many_atoms")``
    as soon as its sites are counted.
    """
    if fast:
        try:
            return parse_p1_cif(text, max_atoms=max_atoms)
        except TooManySites as err:
            raise RecordError("too_many_atoms", f"{err.count} atoms > max atoms {max_atoms}") from None
        except NotSimpleCif:
            pass
    from pymatgen.io.cif import CifParser  # pymatgen is slow to import

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        structures = CifParser.from_str(text).parse_structures(primitive=False, on_error="raise")
    if not structures:
        raise RecordError("parse_error", "CIF holds no structure")
    return structures[0]
