"""The worker side of a conversion: raw records parsed, checked and encoded, one result tuple per record.

Owns :func:`convert_records` (what runs in the worker processes of ``unimat-convert``: parse with
:mod:`ase_unimat.data.parsing`, encode with :func:`ase_unimat.core.representation.encode`, pick the
property columns) and the short skip reasons of a representation error (``classify``). A bad record
never raises: it comes back as a ``("skip", ...)`` tuple with its reason.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ase_unimat.core.representation import MIN_DISTANCE, RepresentationError, encode
from ase_unimat.data.convert_options import ColumnSpec
from ase_unimat.data.hdf5 import sparse_atoms
from ase_unimat.data.journal import printable
from ase_unimat.data.parsing import parse
from ase_unimat.data.records import RawRecord, RecordError

_REASONS = (
    ("disordered", "disordered"),
    ("outside the periodic-table grid", "unknown_element"),
    ("exceed L", "too_many_per_element"),
    ("NaN or infinite", "non_finite"),
    ("not periodic", "not_periodic"),
    ("volume", "degenerate_cell"),
    ("no atoms", "empty"),
    ("closer than", "overlapping_atoms"),
)


def classify(error: Exception) -> str:
    """Short skip reason of a representation error message."""
    message = str(error)
    for pattern, reason in _REASONS:
        if pattern in message:
            return reason
    return "invalid_structure"


def _pick_properties(properties: dict, columns: Sequence[ColumnSpec]) -> dict:
    picked = {}
    for spec in columns:
        for source in spec.sources:
            value = properties.get(source)
            if value is not None and value != "":
                picked[spec.name] = value
                break
    return picked


def convert_records(raws: Sequence[RawRecord], *, n_slots: int, max_atoms: int,
                    columns: Sequence[ColumnSpec] = ()) -> list[tuple]:
    """Parse and encode raw records (runs in worker processes).

    Returns per record ``("ok", id, source, numbers (n,), frac (n, 3), cellpar (6,), properties)`` or
    ``("skip", id, source, reason, message)``. Besides what the readers and :func:`encode` refuse,
    a record is skipped as ``bad_id`` when its id holds control characters (HDF5 cannot store a NUL)
    and as ``overlapping_atoms`` when two atoms are closer than
    :data:`~ase_unimat.representation.MIN_DISTANCE` (0.5 Angstrom, periodic images included).
    """

    out = []
    for raw in raws:
        record = parse(raw, max_atoms=max_atoms)
        item = record.structure_or_error
        if isinstance(item, RecordError):
            out.append(("skip", record.record_id, record.source, item.reason, item.message))
            continue
        if not record.record_id.isprintable():
            out.append(("skip", record.record_id, record.source, "bad_id",
                        f"material id {printable(record.record_id)!r} holds control characters"))
            continue
        try:
            if len(item) > max_atoms:
                raise RecordError("too_many_atoms", f"{len(item)} atoms > max atoms {max_atoms}")
            coords, cellpar = encode(item, n_slots=n_slots, min_distance=MIN_DISTANCE)
            numbers, frac = sparse_atoms(coords)
        except RecordError as err:
            out.append(("skip", record.record_id, record.source, err.reason, err.message))
            continue
        except RepresentationError as err:
            out.append(("skip", record.record_id, record.source, classify(err), str(err)))
            continue
        except Exception as err:  # noqa: BLE001 - one bad structure must not stop the run
            out.append(("skip", record.record_id, record.source, "invalid_structure", f"{type(err).__name__}: {err}"))
            continue
        properties = _pick_properties(record.properties, columns)
        out.append(("ok", record.record_id, record.source, numbers.astype(np.uint8), frac, cellpar, properties))
    return out
