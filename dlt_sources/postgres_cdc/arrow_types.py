"""PostgreSQL text output → typed Arrow columns, one whole column at a time.

Why one converter for both paths: the snapshot (COPY … CSV) and the change stream
(pgoutput) both carry each value as the type's text output, so converting through
the same function guarantees a table keeps the same Arrow (and warehouse) types
whichever path wrote a row. Both connections set ``TimeZone=UTC`` and ``DateStyle=ISO``
(see ``SESSION_OPTIONS``) so the text is unambiguous; Arrow's casts then parse it in C.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from dlt_sources.common.rejects import CastFlags

# Session settings that fix the text output of dates, times and floats.
SESSION_OPTIONS = "-c TimeZone=UTC -c DateStyle=ISO,YMD -c IntervalStyle=postgres -c extra_float_digits=1"

BOOL, BYTEA, INT8, INT2, INT4, OID = 16, 17, 20, 21, 23, 26
JSON, JSONB = 114, 3802
FLOAT4, FLOAT8 = 700, 701
DATE, TIMESTAMP, TIMESTAMPTZ = 1082, 1114, 1184
NUMERIC = 1700

_CASTS: dict[int, pa.DataType] = {
    INT2: pa.int16(),
    INT4: pa.int32(),
    INT8: pa.int64(),
    OID: pa.uint32(),
    FLOAT4: pa.float32(),
    FLOAT8: pa.float64(),
    DATE: pa.date32(),
    TIMESTAMP: pa.timestamp("us"),
    TIMESTAMPTZ: pa.timestamp("us", tz="UTC"),
}
MAX_DECIMAL_PRECISION = 38


def numeric_precision(type_modifier: int) -> tuple[int, int] | None:
    """(precision, scale) of ``numeric(p, s)``; None for an unconstrained ``numeric``."""
    if type_modifier < 4:
        return None
    packed = type_modifier - 4
    return (packed >> 16) & 0xFFFF, packed & 0xFFFF


def arrow_type(type_oid: int, type_modifier: int) -> pa.DataType:
    """The Arrow type a column of this PostgreSQL type becomes.

    Types without an exact Arrow equivalent (time, interval, arrays, unconstrained
    numeric, which may hold NaN or more than 38 digits) stay text.
    """
    if type_oid in _CASTS:
        return _CASTS[type_oid]
    if type_oid == BOOL:
        return pa.bool_()
    if type_oid == BYTEA:
        return pa.binary()
    if type_oid == NUMERIC:
        bounds = numeric_precision(type_modifier)
        if bounds and bounds[0] <= MAX_DECIMAL_PRECISION:
            return pa.decimal128(*bounds)
    return pa.string()


def dlt_column_hints(type_oid: int) -> dict[str, Any]:
    """Column hints Arrow can't express: json/jsonb arrive as text but are JSON to dlt."""
    if type_oid in (JSON, JSONB):
        return {"data_type": "json"}
    return {}


def to_arrow(
    text: pa.Array, type_oid: int, type_modifier: int, flags: CastFlags | None = None, name: str = ""
) -> pa.Array:
    """Convert a column of text output (``string`` or ``binary``, nulls allowed) to its type.

    With ``flags``, a value the type cannot hold in Arrow ('infinity', a BC date, a year
    past 9999, NaN in numeric(p,s)) becomes NULL and is flagged for the quarantine
    (common/rejects.py) instead of failing the whole batch.
    """
    if text.type != pa.string():
        text = text.cast(pa.string())
    target = arrow_type(type_oid, type_modifier)
    if target == pa.string():
        return text
    if target == pa.bool_():
        return pc.equal(text, "t")
    if target == pa.binary():
        # bytea's hex output ('\x0a1b…'); Arrow has no hex decoder, and bytea is rare.
        return pa.array(
            [None if value is None else bytes.fromhex(value[2:]) for value in text.to_pylist()],
            type=pa.binary(),
        )
    if flags is not None:
        return flags.cast(name, text, target)
    return text.cast(target)
