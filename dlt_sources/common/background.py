"""Read ahead in background threads: I/O of the next items overlaps the caller's work.

Why threads: socket reads and database drivers (ADBC, connectorx) release the GIL while
they wait, so the caller can write the previous batch meanwhile. Shared by the REST and
SQL sources.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


def read_ahead(producers: Sequence[Callable[[], Iterator[T]]], depth: int, name: str) -> Iterator[T]:
    """The items of every producer, each iterated in its own thread, in arrival order.

    Up to ``depth`` items per producer wait in the queue. A producer's error is raised in
    the caller (the others are stopped); closing this iterator early (dlt's
    ``add_limit``) stops every thread at its next item and closes its iterator.
    """
    box: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=max(1, depth * len(producers)))
    stop = threading.Event()

    def put(kind: str, value: Any) -> bool:
        while not stop.is_set():
            try:
                box.put((kind, value), timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce(producer: Callable[[], Iterator[T]]) -> None:
        items: Iterator[T] | None = None
        try:
            items = producer()
            for item in items:
                if not put("item", item):
                    return
        except BaseException as exc:
            put("error", exc)
        else:
            put("done", None)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    workers = [threading.Thread(target=produce, args=(p,), name=name, daemon=True) for p in producers]
    for worker in workers:
        worker.start()
    running = len(workers)
    try:
        while running:
            kind, value = box.get()
            if kind == "item":
                yield value
            elif kind == "error":
                raise value
            else:
                running -= 1
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=60)
