"""read_ahead: items of several producers from threads, errors in the caller, early stop."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from dlt_sources.common.background import read_ahead


def test_items_of_every_producer_arrive_once() -> None:
    producers = [lambda: iter(range(0, 100)), lambda: iter(range(100, 250)), lambda: iter([])]
    assert sorted(read_ahead(producers, depth=2, name="t")) == list(range(250))


def test_a_producer_error_is_raised_in_the_caller() -> None:
    def failing() -> Iterator[int]:
        yield 1
        raise ValueError("page 2 is broken")

    with pytest.raises(ValueError, match="page 2 is broken"):
        list(read_ahead([failing], depth=1, name="t"))


def test_closing_early_stops_the_threads_and_closes_their_iterators() -> None:
    closed = threading.Event()

    def endless() -> Iterator[int]:
        try:
            n = 0
            while True:
                yield n
                n += 1
        finally:
            closed.set()

    items = read_ahead([endless], depth=3, name="t-endless")
    assert [next(items) for _ in range(5)] == [0, 1, 2, 3, 4]
    items.close()
    assert closed.wait(5)
    assert not any(t.name == "t-endless" and t.is_alive() for t in threading.enumerate())
