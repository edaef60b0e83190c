"""Read committed changes from the slot up to the server's current WAL position.

Why a bounded read instead of a long-lived consumer: a pipeline run must end so
its load (and the LSN stored with it) can commit. The run reads every transaction
committed before the WAL position seen at its start, or stops at a transaction
boundary once ``max_changes`` changes are held (the next run continues), so memory
stays bounded however far behind the slot is.

Acknowledgement: the slot is told (``flush_lsn``) only the LSN stored in the
warehouse with the last successful load, never what this run read; a crash at any
point therefore replays from the last committed load, and transactions at or
below the stored LSN are skipped.
"""

from __future__ import annotations

import select
from dataclasses import dataclass, field
from typing import Any

import psycopg2
import psycopg2.errors
import psycopg2.extras

from dlt_sources.errors import SourceError, SourceUnreachable, connection_error, refused_certificate
from dlt_sources.postgres_cdc.arrow_types import SESSION_OPTIONS
from dlt_sources.postgres_cdc.catalog import SlotLost, safe_dsn
from dlt_sources.postgres_cdc.changes import ChangeLog
from dlt_sources.postgres_cdc.pgoutput import Relation, decode

# Seconds of silence after which we ask the server for a keepalive carrying its position.
IDLE_POLL_S = 0.2

INSERT, UPDATE, DELETE, BEGIN, COMMIT, RELATION, TRUNCATE = b"IUDBCRT"


@dataclass
class StreamResult:
    end_lsn: int | None = None  # end LSN of the last transaction read
    changes: int = 0
    transactions: int = 0
    truncates: dict[str, int] = field(default_factory=dict)  # table → LSN of its last TRUNCATE
    complete: bool = True  # False when max_changes stopped the read early


def remediation(source: str) -> str:
    return f"run `elt cdc resnapshot {source}` to drop the slot and reload every table from a new snapshot"


def replication_error(source: str, slot: str, exc: psycopg2.Error) -> SourceError:
    """Classify a server error: a lost or missing slot can't be retried, a dropped connection can."""
    message = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if isinstance(exc, psycopg2.errors.ObjectNotInPrerequisiteState | psycopg2.errors.UndefinedObject):
        return SlotLost(
            f"source {source}: replication slot {slot} is unusable ({message}); {remediation(source)}"
        )
    if isinstance(exc, psycopg2.errors.ObjectInUse):
        return SourceError(f"source {source}: replication slot {slot} is in use by another run ({message})")
    if isinstance(exc, psycopg2.OperationalError | psycopg2.InterfaceError):
        return SourceUnreachable(f"source {source}: replication connection lost ({message})")
    return SourceError(f"source {source}: replication failed ({message})")


def replication_connection(dsn: str, source: str) -> Any:
    """A replication connection (snapshot export and streaming); unreachable is transient."""
    try:
        return psycopg2.connect(
            dsn,
            connection_factory=psycopg2.extras.LogicalReplicationConnection,
            options=SESSION_OPTIONS,
            connect_timeout=10,
        )
    except psycopg2.OperationalError as exc:
        reason = (str(exc).strip().splitlines() or ["?"])[0]
        note = "" if refused_certificate(reason) else "; the role needs the REPLICATION attribute"
        raise connection_error(
            f"source {source}: cannot open a replication connection to {safe_dsn(dsn)} "
            f"(setting sources.{source}.credentials{note})",
            reason,
        ) from None


def stream_changes(
    dsn: str,
    source: str,
    slot: str,
    publication: str,
    start_lsn: int,
    target_lsn: int,
    tables: dict[str, ChangeLog],
    max_changes: int,
) -> StreamResult:
    """Collect changes committed after ``start_lsn`` up to ``target_lsn`` into ``tables`` (by name)."""
    conn = replication_connection(dsn, source)
    try:
        cursor = conn.cursor()
        cursor.start_replication(
            slot_name=slot,
            decode=False,
            start_lsn=start_lsn,
            options={"proto_version": "1", "publication_names": publication},
        )
        # Acknowledge what the warehouse holds (the last run's commit) and ask for the
        # server's position at once, so an idle slot ends the read without waiting.
        cursor.send_feedback(flush_lsn=start_lsn, reply=True, force=True)
        return _read(conn, cursor, start_lsn, target_lsn, tables, max_changes)
    except psycopg2.Error as exc:
        raise replication_error(source, slot, exc) from None
    finally:
        conn.close()


def _read(
    conn: psycopg2.extensions.connection,
    cursor: psycopg2.extras.ReplicationCursor,
    start_lsn: int,
    target_lsn: int,
    tables: dict[str, ChangeLog],
    max_changes: int,
) -> StreamResult:
    result = StreamResult()
    relations: dict[int, ChangeLog | None] = {}
    in_transaction = skipping = False
    read_message = cursor.read_message
    while True:
        message = read_message()
        if message is None:
            if not in_transaction and cursor.wal_end >= target_lsn:
                return result
            if not select.select([conn], [], [], IDLE_POLL_S)[0]:
                cursor.send_feedback(reply=True)
            continue
        payload = message.payload
        tag = payload[0]
        if tag in (INSERT, UPDATE, DELETE):
            if skipping:
                continue
            table = relations.get(int.from_bytes(payload[1:5]))
            if table is not None:
                table.add(payload, message.data_start)
                result.changes += 1
        elif tag == BEGIN:
            begin = decode(payload)
            in_transaction = True
            # Already in the warehouse (a replay after a crash before the acknowledgement).
            skipping = begin.final_lsn < start_lsn  # type: ignore[union-attr]
        elif tag == COMMIT:
            commit = decode(payload)
            in_transaction = False
            if skipping:
                continue
            result.end_lsn = commit.end_lsn  # type: ignore[union-attr]
            result.transactions += 1
            if commit.end_lsn >= target_lsn:  # type: ignore[union-attr]
                return result
            if result.changes >= max_changes:
                result.complete = False
                return result
        elif tag == RELATION:
            relation = decode(payload)
            assert isinstance(relation, Relation)
            table = tables.get(relation.name)
            if table is not None and relation.namespace == table.schema:
                table.use_columns(relation.columns)
                relations[relation.relation_id] = table
            else:
                relations[relation.relation_id] = None
        elif tag == TRUNCATE and not skipping:
            truncate = decode(payload)
            for relation_id in truncate.relation_ids:  # type: ignore[union-attr]
                table = relations.get(relation_id)
                if table is not None:
                    result.truncates[table.name] = message.data_start
