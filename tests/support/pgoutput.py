"""pgoutput messages built byte by byte, as PostgreSQL's "Logical Replication Message
Formats" (protocol version 1) describes them, for the decoder and change-log tests."""

from __future__ import annotations

import struct

from dlt_sources.postgres_cdc.pgoutput import UNCHANGED


def tuple_data(*values: bytes | object | None) -> bytes:
    """TupleData: Int16 count, then per column 'n' | 'u' | 't' Int32 length + bytes."""
    out = struct.pack(">h", len(values))
    for value in values:
        if value is None:
            out += b"n"
        elif value is UNCHANGED:
            out += b"u"
        else:
            out += b"t" + struct.pack(">i", len(value)) + value  # type: ignore[arg-type]
    return out
