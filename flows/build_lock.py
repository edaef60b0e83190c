"""One warehouse-wide lock around everything that builds or publishes marts.

Why: the nightly run, a ``--source`` run, a triggered build and a backfill each plan from
the state the last build left (flows/build_state.py) and publish what they built; two at
once would plan from the same state and publish over each other. The lock is a Prefect
global concurrency limit with one slot, so it holds across workers and machines; a run
waiting for it shows as waiting in Prefect.

Why more than ``concurrency()``: Prefect frees the slot of a holder that died only when
its lease expires *and* the server's repossessor service runs. A temporary server (``elt
run`` without ``PREFECT_API_URL``, the test harness) runs no repossessor, and the default
lease storage is the server's memory, so a build killed there, or on any server that
restarts while a build holds the lock, would keep the slot for ever and every later build
would wait for it. So the holder also keeps a heartbeat, the Prefect variable
``elt-build-holder`` it rewrites every few seconds, and a waiter that sees the lock held
while neither the limit nor the heartbeat changes for ``ELT_BUILD_LOCK_STALE_SECONDS``
(on its own clock, so clocks of different machines never matter) frees the slot. Exactly
one waiter frees it: it must first create the variable ``elt-build-freed-<holder>``,
which the server lets only one do. Prefect's own lease is shorter than that, so where a
repossessor runs it frees a dead holder's slot first and nobody frees it twice (so a stale
time under about 70 s is only for servers without one: the tests' and the campaign's).
"""

from __future__ import annotations

import contextvars
import hashlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from typing import Any, Final

from prefect import get_client
from prefect.client.schemas.actions import VariableCreate, VariableUpdate
from prefect.concurrency.sync import concurrency
from prefect.exceptions import MissingContextError, ObjectAlreadyExists, ObjectNotFound
from prefect.logging import get_logger, get_run_logger

BUILD_LOCK: Final[str] = "elt-build"
HOLDER_VARIABLE: Final[str] = f"{BUILD_LOCK}-holder"
STALE_SETTING: Final[str] = "ELT_BUILD_LOCK_STALE_SECONDS"
TIMEOUT_SETTING: Final[str] = "ELT_BUILD_LOCK_TIMEOUT_SECONDS"
DEFAULT_STALE_SECONDS: Final[float] = 90.0
DEFAULT_TIMEOUT_SECONDS: Final[float] = 6 * 3600.0
RESET_COMMAND: Final[str] = f"prefect global-concurrency-limit update {BUILD_LOCK} --active-slots 0"


def _logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """The flow run's logger inside a run (the message shows in Prefect), else this module's."""
    try:
        return get_run_logger()
    except MissingContextError:
        return get_logger(__name__)


class BuildLockTimeout(RuntimeError):
    """The lock stayed held by a live holder for longer than the wait allowed."""


@dataclass(frozen=True)
class LockTiming:
    """How often the holder beats, when a waiter calls it dead, and how long a waiter waits."""

    stale: float
    timeout: float

    @property
    def heartbeat(self) -> float:
        return self.stale / 6

    @property
    def lease(self) -> float:
        """Prefect's lease, the shortest its API takes: with the default stale time it expires,
        and a repossessor frees it, before a waiter would call its holder dead."""
        return 60.0

    @classmethod
    def from_environment(cls) -> LockTiming:
        return cls(
            stale=float(os.environ.get(STALE_SETTING, DEFAULT_STALE_SECONDS)),
            timeout=float(os.environ.get(TIMEOUT_SETTING, DEFAULT_TIMEOUT_SECONDS)),
        )


def ensure_build_lock() -> None:
    """Create the one-slot limit if it is missing (a fresh Prefect server), or set it back to one."""
    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(BUILD_LOCK, 1)


def _holder_description() -> dict[str, Any]:
    from prefect.runtime import flow_run

    return {
        "holder": uuid.uuid4().hex,
        "flow_run": flow_run.id or "",
        "flow_run_name": flow_run.name or "",
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "beat": 0,
    }


def _observe() -> tuple[Any, ...]:
    """What changes while a live holder holds the lock: the limit's row and the heartbeat."""
    with get_client(sync_client=True) as client:
        limit = client.read_global_concurrency_limit_by_name(BUILD_LOCK)
        record = client.read_variable_by_name(HOLDER_VARIABLE)
    value = record.value if record is not None else None
    return (limit.active_slots, limit.updated, record.updated if record else None, str(value)), value


def _free_dead_holder(record: dict[str, Any] | None, snapshot: tuple[Any, ...]) -> bool:
    """Free the slot of a dead holder, if this waiter is the one allowed to; True if it did."""
    key = record.get("holder") if isinstance(record, dict) else None
    token = key or hashlib.sha256(repr(snapshot).encode()).hexdigest()[:32]
    with get_client(sync_client=True) as client:
        try:
            marker = VariableCreate(name=f"{BUILD_LOCK}-freed-{token}", value=_describe(record))
            client.create_variable(marker)
        except ObjectAlreadyExists:
            return False
        client.release_concurrency_slots(names=[BUILD_LOCK], slots=1, occupancy_seconds=1.0)
    _logger().warning("Freed %s from a holder that stopped beating (%s)", BUILD_LOCK, _describe(record))
    return True


def _describe(record: Any) -> str:
    if not isinstance(record, dict):
        return "no holder recorded"
    run = record.get("flow_run_name") or record.get("flow_run") or "no flow run"
    return f"{run}, pid {record.get('pid')} on {record.get('host')}, since {record.get('since')}"


@contextmanager
def _every(seconds: float, step: Callable[[], None]) -> Iterator[None]:
    """Run ``step`` every ``seconds`` in a thread until the block ends; a step that fails
    (the API did not answer) is only a later one. The thread runs in this context: Prefect's
    settings (which API) live in context variables."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(seconds):
            with suppress(Exception):
                step()

    thread = threading.Thread(target=contextvars.copy_context().run, args=(loop,), daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _dead_holder_watch(timing: LockTiming) -> Callable[[], None]:
    """One look at the holder per call; frees its slot once nothing changed for ``timing.stale``."""
    seen: dict[str, Any] = {"at": time.monotonic(), "snapshot": None}

    def look() -> None:
        snapshot, record = _observe()
        if snapshot != seen["snapshot"]:
            seen["at"], seen["snapshot"] = time.monotonic(), snapshot
        elif time.monotonic() - seen["at"] >= timing.stale and _free_dead_holder(record, snapshot):
            seen["snapshot"] = None

    return look


@contextmanager
def _slot(timing: LockTiming) -> Iterator[None]:
    """Wait for the slot, freeing it from a dead holder; BuildLockTimeout after ``timing.timeout``."""
    held = ExitStack()
    try:
        with _every(timing.heartbeat, _dead_holder_watch(timing)):
            wait = {"timeout_seconds": timing.timeout, "lease_duration": timing.lease}
            held.enter_context(concurrency(BUILD_LOCK, occupy=1, strict=True, **wait))
    except TimeoutError as exc:
        _, record = _observe()
        raise BuildLockTimeout(
            f"waited {timing.timeout:.0f} s for the build lock {BUILD_LOCK}, held by {_describe(record)} "
            f"and still beating; if that run is gone, free the lock with `{RESET_COMMAND}`"
        ) from exc
    with held:
        yield


@contextmanager
def _heartbeat(timing: LockTiming) -> Iterator[None]:
    """Publish this holder in ``elt-build-holder`` and rewrite it every ``timing.heartbeat`` seconds."""
    record = _holder_description()

    def beat() -> None:
        record["beat"] += 1
        with get_client(sync_client=True) as client:
            client.update_variable(VariableUpdate(name=HOLDER_VARIABLE, value=record))

    with get_client(sync_client=True) as client:
        with suppress(ObjectNotFound):
            client.delete_variable_by_name(HOLDER_VARIABLE)
        client.create_variable(VariableCreate(name=HOLDER_VARIABLE, value=record))
    with _every(timing.heartbeat, beat):
        yield


@contextmanager
def build_lock(timing: LockTiming | None = None) -> Iterator[None]:
    """Hold the build lock: waits while a live build holds it, frees it from a dead one."""
    timing = timing or LockTiming.from_environment()
    ensure_build_lock()
    with _slot(timing), _heartbeat(timing):
        yield
