"""The cursor's tiebreaker and the partition ranges: small pure pieces, unit-tested.

dlt's incremental reads ``cursor >= last value`` and drops the rows it has seen by
hashing them, so every row that shares the last cursor value is read again on every
run (a batch stamped with one ``now()`` turned 0.2 s empty runs into 3.3 s runs).
With a one-column primary key we keep a *mark* next to dlt's cursor in the resource
state (so in the warehouse): the last cursor value, the largest primary key read at
that value, and how many rows at that value up to that key were read. The next run
first counts those rows again (an index lookup): if the count matches, it reads only
``cursor > last OR (cursor = last AND key > mark key)``; if it differs, a row was
committed later with the same cursor value and a key below the mark, so the run reads
``cursor >= last`` as dlt would (the merge keeps one row per key). Nothing is missed
that dlt's own ``>=`` would catch; the assumption is the same as any cursor's: a
change gets a cursor value no smaller than the ones already read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

MARK_STATE_KEY = "cursor_mark"


def comparable(value: Any) -> Any:
    """A JSON-safe form of a cursor value that compares equal across state round trips."""
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value.isoformat()
    if isinstance(value, date | Decimal):
        return str(value)
    return value


@dataclass(frozen=True)
class CursorMark:
    """Rows read at the last cursor value: those with ``key <= key``, ``count`` of them."""

    cursor: Any
    key: Any
    count: int

    def to_state(self) -> dict[str, Any]:
        return {"cursor": comparable(self.cursor), "key": self.key, "count": self.count}

    @classmethod
    def from_state(cls, stored: Any) -> CursorMark | None:
        if not isinstance(stored, dict) or not {"cursor", "key", "count"} <= stored.keys():
            return None
        return cls(stored["cursor"], stored["key"], int(stored["count"]))

    def applies_to(self, start: Any) -> bool:
        """Whether this mark was taken at dlt's current start value."""
        return start is not None and comparable(start) == self.cursor


class MarkTracker:
    """Follows the largest cursor value in the batches read, its largest key and row count."""

    def __init__(self, cursor: str, key: str) -> None:
        self.cursor_column, self.key_column = cursor, key
        self.cursor: Any = None
        self.key: Any = None
        self.count = 0

    def add(self, table: pa.Table) -> None:
        values = table.column(self.cursor_column)
        top = pc.max(values)
        if not top.is_valid:
            return
        at_top = pc.equal(values, top)
        keys = pc.filter(table.column(self.key_column), at_top)
        top_value, top_key, n = top.as_py(), pc.max(keys).as_py(), len(keys)
        if self.cursor is None or top_value > self.cursor:
            self.cursor, self.key, self.count = top_value, top_key, n
        elif top_value == self.cursor:
            self.key, self.count = max(self.key, top_key), self.count + n

    def mark(self, previous: CursorMark | None, start: Any, tiebreak_used: bool) -> CursorMark | None:
        """The mark after this run: ``previous`` carried on when nothing newer was read.

        With the tiebreak, the rows read at the previous value all have keys above the
        previous mark, so its count adds to theirs; without it every row at that value
        was read again and this run's count is the whole count.
        """
        if self.cursor is None:  # nothing read: the previous mark holds if it was used
            return previous if tiebreak_used else None
        if tiebreak_used and previous is not None and comparable(self.cursor) == previous.cursor:
            return CursorMark(self.cursor, max(previous.key, self.key), previous.count + self.count)
        return CursorMark(self.cursor, self.key, self.count)


def split_range(low: int, high: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous, inclusive ranges covering ``low..high`` (fewer if it is short)."""
    if high < low:
        return []
    width = high - low + 1
    parts = max(1, min(parts, width))
    step, extra = divmod(width, parts)
    ranges: list[tuple[int, int]] = []
    start = low
    for index in range(parts):
        end = start + step - 1 + (1 if index < extra else 0)
        ranges.append((start, end))
        start = end + 1
    return ranges
