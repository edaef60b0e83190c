"""Many pgoutput TupleData at once → one Arrow column of text values per table column.

Why not ``pgoutput.decode_tuple`` per message: walking a 10-column tuple in Python costs
about 5 µs, more than reading the message from the server. Here the messages are joined
into one buffer and each column is located in every message at once with numpy (where
column i+1 starts follows from column i's kind byte and length), then Arrow copies the
values into one contiguous column in C.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from dlt_sources.postgres_cdc.pgoutput import PgOutputError

TEXT, BINARY, NULL, UNCHANGED_KIND = b"tbnu"


@dataclass
class DecodedColumn:
    """One column of every tuple: its kind byte per row and its values (NULL unless 't'/'b')."""

    kinds: np.ndarray
    values: pa.Array  # large_binary: the type's text output

    @property
    def unchanged(self) -> np.ndarray:
        return self.kinds == UNCHANGED_KIND

    @property
    def has_unchanged(self) -> bool:
        return bool(self.unchanged.any())


@dataclass
class DecodedTuples:
    tags: np.ndarray  # each message's first byte ('I', 'U', 'D')
    columns: list[DecodedColumn]


def decode_tuples(payloads: Sequence[bytes], offset: int, width: int) -> DecodedTuples:
    """The TupleData at byte ``offset`` of every payload, each of ``width`` columns."""
    lengths = np.fromiter(map(len, payloads), dtype=np.int64, count=len(payloads))
    starts = np.zeros(len(payloads), dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    # Padding: reading the 4 length bytes after a final 'n' or 'u' stays inside the buffer.
    data = b"".join(payloads) + bytes(8)
    raw = np.frombuffer(data, dtype=np.uint8)
    # The big-endian integer starting at every byte (unaligned views of the same memory):
    # one gather per column instead of one per byte.
    int16_at = np.ndarray(shape=(len(data) - 1,), dtype=">i2", buffer=data, strides=(1,))
    int32_at = np.ndarray(shape=(len(data) - 3,), dtype=">i4", buffer=data, strides=(1,))
    buffer = pa.py_buffer(data)
    position = starts + offset
    counts = int16_at[position]
    if (counts != width).any():
        row = int(np.argmax(counts != width))
        raise PgOutputError(f"tuple of {counts[row]} columns where the relation has {width}")
    position += 2
    columns = []
    for _ in range(width):
        kinds = raw[position]
        has_value = (kinds == TEXT) | (kinds == BINARY)
        if not (has_value | (kinds == NULL) | (kinds == UNCHANGED_KIND)).all():
            row = int(np.argmin(has_value | (kinds == NULL) | (kinds == UNCHANGED_KIND)))
            raise PgOutputError(f"unknown tuple value kind {chr(kinds[row])!r} at byte {position[row]}")
        value_start = position + 1
        value_start[has_value] += 4
        value_end = value_start.copy()
        value_end[has_value] += int32_at[position[has_value] + 1]
        columns.append(DecodedColumn(kinds, _gather(buffer, value_start, value_end, has_value)))
        position = value_end
    return DecodedTuples(raw[starts], columns)


def _gather(buffer: pa.Buffer, starts: np.ndarray, ends: np.ndarray, valid: np.ndarray) -> pa.Array:
    """The byte ranges ``starts[i]:ends[i]`` of ``buffer`` as one binary array.

    The ranges are increasing and do not overlap, so [s0, e0, s1, e1, …] is a valid
    offsets buffer over the shared data: every even entry of that array is a value, every
    odd one the bytes between two values. Taking the even entries copies the values out.
    """
    rows = len(starts)
    if rows == 0:
        return pa.array([], type=pa.large_binary())
    offsets = np.empty(2 * rows, dtype=np.int64)
    offsets[0::2] = starts
    offsets[1::2] = ends
    spans = pa.Array.from_buffers(pa.large_binary(), 2 * rows - 1, [None, pa.py_buffer(offsets), buffer])
    values = spans.take(_int64_array(np.arange(0, 2 * rows, 2)))
    validity = None if valid.all() else _bitmap(valid)
    return pa.Array.from_buffers(pa.large_binary(), rows, [validity, *values.buffers()[1:]])


# Arrays built from numpy buffers directly: ``pa.array(ndarray)`` imports numpy.ma on first
# use, 0.2-0.3 s per run.


def _int64_array(values: np.ndarray) -> pa.Array:
    return pa.Array.from_buffers(pa.int64(), len(values), [None, pa.py_buffer(values)])


def bool_array(flags: np.ndarray) -> pa.Array:
    return pa.Array.from_buffers(pa.bool_(), len(flags), [None, _bitmap(flags)])


def _bitmap(flags: np.ndarray) -> pa.Buffer:
    return pa.py_buffer(np.packbits(flags, bitorder="little"))
