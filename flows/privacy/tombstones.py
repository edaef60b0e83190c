"""Tombstones: what an erasure leaves so that no later load brings the person back.

``elt_audit.tombstones`` holds, per forgotten identifier, its keyed hash (HMAC-SHA256 with
``privacy.tombstone_key``, flows/pii.py), its kind, the request and when. Never the value:
the table tells who was forgotten only to someone who holds the key and guesses the value.
Every load reads them (flows/ingest.py) and passes its batches through the guard
(dlt_sources/common/privacy.py); a run that finds tombstones made with another key fails,
because the guard could no longer recognise anyone.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from dlt_sources.common.privacy import Tombstones, keyed_hash
from flows.audit import audit_reader, query_audit, record, utc
from flows.config import Settings
from flows.errors import ConfigError
from flows.pii import TOMBSTONE_KEY
from flows.privacy.subjects import Identifiers

TABLE = "tombstones"


@dataclass(frozen=True)
class TombstoneRecord:
    key_hash: str
    kind: str
    key_id: str
    request_id: str
    forgotten_at: datetime


@dataclass(frozen=True)
class StoredTombstones:
    tombstones: Tombstones
    newest: datetime  # when the latest erasure left its tombstones


def key_id(key: bytes) -> str:
    """A fingerprint of the key (not the key): which key made a tombstone."""
    return hmac.new(key, b"elt tombstone key id", hashlib.sha256).hexdigest()[:16]


def tombstone_key(settings: Settings) -> bytes:
    return TOMBSTONE_KEY.value(settings).encode()


def stored_tombstones(settings: Settings) -> StoredTombstones | None:
    """The warehouse's tombstones, None when nobody was ever forgotten (a load then pays one query).

    Sources load in parallel threads, and two threads making the same dlt pipeline at once
    trip over its working folder ("Directory not empty"): one reader at a time."""
    with _READING:
        return _stored_tombstones(settings)


_READING = threading.Lock()


def _stored_tombstones(settings: Settings) -> StoredTombstones | None:
    rows = query_audit(settings, TABLE, "select key_hash, key_id, forgotten_at from {table}")
    if not rows:
        return None
    key = tombstone_key(settings)
    made_with = {row[1] for row in rows}
    if made_with != {key_id(key)}:
        raise ConfigError(
            "elt_audit.tombstones were made with another privacy.tombstone_key than the one set now: "
            "restore that key (PRIVACY__TOMBSTONE_KEY or restricted.tombstone_key), or no forgotten "
            "person can be recognised and kept out of new loads"
        )
    newest = max(utc(row[2]) for row in rows)
    return StoredTombstones(Tombstones(key, frozenset(row[0] for row in rows)), newest)


def add_tombstones(
    settings: Settings, key: bytes, found: Identifiers, request_id: str, at: datetime
) -> list[TombstoneRecord]:
    """Record a tombstone for each identifier not already forgotten; returns those added."""
    existing = {row[0] for row in query_audit(settings, TABLE, "select key_hash from {table}")}
    added = [
        TombstoneRecord(hashed, kind, key_id(key), request_id, at)
        for kind, values in sorted(found.items())
        for value in sorted(values)
        if (hashed := keyed_hash(key, kind, value)) not in existing
    ]
    record(settings, TABLE, added)
    return added


def unfinished(settings: Settings) -> frozenset[str]:
    """The tombstones of erasures that left no proof: they were interrupted (killed, or the
    warehouse failed), and the next ``forget`` completes them."""
    with audit_reader(settings) as read:
        stones = read(TABLE, "select key_hash, request_id from {table}")
        done = {request for (request,) in read("erasures", "select distinct request_id from {table}")}
    return frozenset(key_hash for key_hash, request in stones if request not in done)


def hashes_of(key: bytes, found: Identifiers) -> Iterable[str]:
    return (keyed_hash(key, kind, value) for kind, values in found.items() for value in values)
