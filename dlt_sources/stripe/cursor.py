"""The events cursor: which events are new, in which order they apply, and when it expired.

Pure functions over plain dicts, so the logic is unit-tested without HTTP or dlt.

A cursor is what a resource keeps in dlt state (stored in the warehouse)::

    {"created": 1700000123, "ids": ["evt_a", "evt_b"], "read_at": 1700000125.4}

``created`` is the newest event ``created`` applied so far, ``ids`` the events applied at
that very second (the next read asks for ``created[gte]`` and drops those, the same
boundary de-duplication dlt's incremental does), and ``read_at`` the client time of the
read, which decides whether Stripe may already have dropped events we have not seen.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from dlt_sources.errors import SourceError

Event = dict[str, Any]
Cursor = dict[str, Any]


def checked(events: Iterable[Event]) -> Iterator[Event]:
    """``events``, each with the string ``id`` and integer ``created`` the cursor orders by.

    Why: an event without them cannot be placed, so the read stops at the first one with a
    message naming it, before anything of this read is loaded; the stored cursor and the
    rows already loaded stay as they were. (Quarantining it would skip a change for good.)
    """
    for number, event in enumerate(events, start=1):
        for field, kind, expected in (("id", str, "a string"), ("created", int, "an integer")):
            value = event.get(field)
            if not isinstance(value, kind) or isinstance(value, bool) or value == "":
                shown = "missing" if value is None else f"{value!r}"
                raise SourceError(
                    f"stripe source: table `events`, event #{number} of this read "
                    f"(id {event.get('id')!r}, type {event.get('type')!r}): field `{field}` is {shown}, "
                    f"expected {expected}; nothing of this read was loaded"
                )
        yield event


def event_key(event: Event) -> tuple[int, str]:
    """Apply order: event ``created``, then id. Stripe stamps whole seconds, so within one
    second the id breaks the tie deterministically."""
    return int(event["created"]), str(event["id"])


def new_events(events: Iterable[Event], cursor: Cursor | None) -> list[Event]:
    """Events after ``cursor``, each once, oldest first (so the last change wins)."""
    floor = None if cursor is None else int(cursor["created"])
    seen_at_floor = set() if cursor is None else set(cursor.get("ids") or ())
    unique: dict[str, Event] = {}
    for event in events:
        created = int(event["created"])
        if floor is not None and (created < floor or (created == floor and event["id"] in seen_at_floor)):
            continue
        unique.setdefault(event["id"], event)
    return sorted(unique.values(), key=event_key)


def advance(cursor: Cursor | None, applied: list[Event], read_at: float) -> Cursor:
    """The cursor after applying ``applied`` (as returned by :func:`new_events`)."""
    if not applied:
        if cursor is None:
            return {"created": 0, "ids": [], "read_at": read_at}
        return {**cursor, "read_at": read_at}
    newest = int(applied[-1]["created"])
    ids = {e["id"] for e in applied if int(e["created"]) == newest}
    if cursor is not None and int(cursor["created"]) == newest:
        ids |= set(cursor.get("ids") or ())
    return {"created": newest, "ids": sorted(ids), "read_at": read_at}


def high_water_mark(newest_first: Iterable[Event], read_at: float) -> Cursor:
    """The cursor "everything up to now is applied", from events listed newest first.

    Reads only as far as the newest second: all ids of that second go into the cursor.
    """
    newest: int | None = None
    ids: list[str] = []
    for event in newest_first:
        created = int(event["created"])
        if newest is None:
            newest = created
        if created != newest:
            break
        ids.append(event["id"])
    return {"created": newest or 0, "ids": sorted(ids), "read_at": read_at}


def is_expired(cursor: Cursor, now: float, retention_s: float, margin_s: float = 0.0) -> bool:
    """True when Stripe may have dropped events the cursor has not applied yet.

    Every event newer than the last read is at most ``now - read_at`` old, so the feed
    is complete while that stays inside the retention window (minus a safety margin).
    """
    read_at = cursor.get("read_at")
    if read_at is None:
        return True
    return now - float(read_at) > retention_s - margin_s


def latest_states(events: Iterable[Event], object_name: str) -> dict[str, dict[str, Any] | None]:
    """The last state of each object of one kind; ``None`` marks a deleted object.

    ``events`` must be in apply order (:func:`new_events`). Events about other objects
    (e.g. a dispute in ``charge.dispute.*``) are ignored.
    """
    states: dict[str, dict[str, Any] | None] = {}
    for event in events:
        obj = (event.get("data") or {}).get("object") or {}
        oid = obj.get("id")
        if obj.get("object") != object_name or not oid:
            continue
        deleted = obj.get("deleted") is True or str(event.get("type", "")).endswith(".deleted")
        # re-insert so the dict order is the order of each object's last change
        states.pop(oid, None)
        states[oid] = None if deleted else obj
    return states
