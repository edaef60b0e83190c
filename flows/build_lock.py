"""One warehouse-wide lock around everything that builds or publishes marts.

Why: the nightly run, a ``--source`` run, a triggered build and a backfill each plan from
the state the last build left (flows/build_state.py) and publish what they built; two at
once would plan from the same state and publish over each other. The lock is a Prefect
global concurrency limit with one slot, so it holds across workers and machines; a run
waiting for it shows as waiting in Prefect.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

from prefect import get_client
from prefect.concurrency.sync import concurrency

BUILD_LOCK: Final[str] = "elt-build"


def ensure_build_lock() -> None:
    """Create the one-slot limit if it is missing (a fresh Prefect server), or set it back to one."""
    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(BUILD_LOCK, 1)


@contextmanager
def build_lock() -> Iterator[None]:
    """Hold the build lock; waits as long as another build holds it."""
    ensure_build_lock()
    with concurrency(BUILD_LOCK, occupy=1, strict=True):
        yield
