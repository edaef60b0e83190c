"""The cursor tiebreak mark and the partition ranges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pyarrow as pa
import pytest

from dlt_sources.sql_database.cursor import CursorMark, MarkTracker, comparable, split_range

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def batch(rows: list[tuple[int, datetime]]) -> pa.Table:
    ids, cursors = zip(*rows, strict=True)
    return pa.table({"id": list(ids), "updated_at": pa.array(cursors, pa.timestamp("us", tz="UTC"))})


def test_the_tracker_keeps_the_largest_cursor_its_largest_key_and_count_across_batches():
    tracker = MarkTracker("updated_at", "id")
    tracker.add(batch([(1, T0), (9, T0), (3, T0 - timedelta(1))]))
    tracker.add(batch([(4, T0), (2, T0 - timedelta(2))]))
    mark = tracker.mark(None, None, tiebreak_used=False)
    assert mark == CursorMark(T0, 9, 3)
    assert mark.to_state() == {"cursor": "2025-01-01T00:00:00+00:00", "key": 9, "count": 3}


def test_a_newer_cursor_value_starts_a_new_mark():
    tracker = MarkTracker("updated_at", "id")
    tracker.add(batch([(1, T0), (2, T0 + timedelta(seconds=1))]))
    assert tracker.mark(CursorMark(comparable(T0), 50, 7), T0, tiebreak_used=True) == CursorMark(
        T0 + timedelta(seconds=1), 2, 1
    )


def test_rows_read_after_the_mark_at_the_same_value_add_to_its_count():
    previous = CursorMark(comparable(T0), 50, 7)
    tracker = MarkTracker("updated_at", "id")
    tracker.add(batch([(51, T0), (60, T0)]))
    assert tracker.mark(previous, T0, tiebreak_used=True) == CursorMark(T0, 60, 9)
    # read again from the value on (the mark did not hold): the run's own count is the count
    tracker = MarkTracker("updated_at", "id")
    tracker.add(batch([(1, T0), (60, T0)]))
    assert tracker.mark(previous, T0, tiebreak_used=False) == CursorMark(T0, 60, 2)


def test_an_empty_run_keeps_a_mark_that_held_and_drops_one_that_did_not():
    previous = CursorMark(comparable(T0), 50, 7)
    assert MarkTracker("updated_at", "id").mark(previous, T0, tiebreak_used=True) == previous
    assert MarkTracker("updated_at", "id").mark(previous, T0, tiebreak_used=False) is None


def test_a_mark_applies_only_at_its_own_cursor_value_whatever_the_time_zone():
    mark = CursorMark.from_state({"cursor": comparable(T0), "key": 5, "count": 1})
    assert mark is not None
    assert mark.applies_to(T0.astimezone(timezone(timedelta(hours=2))))
    assert not mark.applies_to(T0 + timedelta(microseconds=1))
    assert not mark.applies_to(None)
    assert CursorMark.from_state({"cursor": "x"}) is None


@pytest.mark.parametrize(
    ("low", "high", "parts", "expected"),
    [
        (1, 10, 3, [(1, 4), (5, 7), (8, 10)]),
        (5, 5, 4, [(5, 5)]),
        (1, 3, 8, [(1, 1), (2, 2), (3, 3)]),
        (-10, 9, 2, [(-10, -1), (0, 9)]),
        (2, 1, 2, []),
    ],
)
def test_partition_ranges_cover_the_keys_once(
    low: int, high: int, parts: int, expected: list[tuple[int, int]]
):
    ranges = split_range(low, high, parts)
    assert ranges == expected
    covered = [key for first, last in ranges for key in range(first, last + 1)]
    assert covered == list(range(low, high + 1))
