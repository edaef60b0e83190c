"""PostgreSQL change data capture as a dlt resource: snapshot once, then stream changes.

A pipeline owns one publication (created by an admin) and one logical slot (pgoutput).
The first run creates the slot with an exported snapshot and loads every table as of
that point (``replace``); later runs read the changes committed since and merge them on
the primary key, deletes through dlt's ``hard_delete`` hint (or kept with
``_cdc_deleted = true`` when ``delete_mode = "soft"``). Every row carries ``_cdc_lsn``,
the WAL position of the change that wrote it.

Exactly-once effect: the LSN up to which changes were read is kept in dlt's source
state, which dlt commits in the warehouse with the same load as the rows. The slot is
acknowledged only up to that stored LSN, at the start of the next run, and changes at
or below it are skipped; so a crash anywhere replays only what the warehouse lacks.

TRUNCATE is not a row change: its LSN is stored per table in the state and
``after_load`` deletes (or, soft, flags) the table's rows written before it, on
every run (an idempotent statement), and reports it as a warning. Never imports Prefect.

A row or change no warehouse can hold ('infinity', a BC or year-10000 timestamp, NaN in a
numeric(p,s), an oversized value) goes to ``_rejected_records`` in the same load (or fails
the run, ``bad_records = "fail"``). A quarantined change leaves the warehouse row at its last
good image; the LSN still advances, so the change is recorded once and never replayed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import dlt
import psycopg2
import pyarrow as pa
import pyarrow.compute as pc
from dlt.extract.resource import DltResource

from dlt_sources.common.arrow import quiet_expected_hint_warnings
from dlt_sources.common.rejects import Quarantine
from dlt_sources.errors import SourceError, SourceUnreachable
from dlt_sources.postgres_cdc import catalog
from dlt_sources.postgres_cdc.arrow_types import arrow_type, dlt_column_hints
from dlt_sources.postgres_cdc.catalog import SlotInfo, SlotLost, TableInfo
from dlt_sources.postgres_cdc.changes import DELETED_COLUMN, LSN_COLUMN, ChangeLog, UnresolvedRows
from dlt_sources.postgres_cdc.pgoutput import Column, format_lsn
from dlt_sources.postgres_cdc.settings import CdcSettings, resolve_settings
from dlt_sources.postgres_cdc.snapshot import READ_BLOCK_BYTES, create_slot, open_snapshot, read_table
from dlt_sources.postgres_cdc.stream import remediation, replication_connection, stream_changes

__all__ = ["CdcReport", "CdcSettings", "SlotLost", "after_load", "replication_resource", "resolve_settings"]

STATE_KEY = "postgres_cdc"
DEDUPLICATED_HINT = "x-stage-data-deduplicated"
# Keys per warehouse look-up of unchanged TOASTed values.
LOOKUP_CHUNK = 1_000


@dataclass
class RunLog:
    """What the last extraction did, for ``after_load`` in the same process."""

    snapshot: bool = False
    changes: int = 0
    transactions: int = 0
    truncated: dict[str, int] = field(default_factory=dict)
    complete: bool = True


# Source name -> the last extraction's log. In-process only: the durable facts (LSN,
# truncates) are in dlt state; this carries the run's warnings to the report.
_LAST_RUN: dict[str, RunLog] = {}


def replication_resource(source: str, tables: Sequence[str], settings: CdcSettings) -> DltResource:
    """One resource that writes every replicated table (each item names its table)."""
    resource_name = f"{source}_replication"
    quiet_expected_hint_warnings([resource_name])
    quarantine = Quarantine(source, settings.bad_records, settings.max_string_bytes)

    @dlt.resource(name=resource_name, write_disposition="merge")
    def replication() -> Iterator[Any]:
        quarantine.take()  # nothing left over from a failed run in this process
        yield from _replicate(source, tables, settings, quarantine)
        rejected = quarantine.item()
        if rejected is not None:
            yield rejected

    return quarantine.attach_to(replication)


def _replicate(
    source: str, names: Sequence[str], settings: CdcSettings, quarantine: Quarantine
) -> Iterator[Any]:
    state = dlt.current.source_state().setdefault(STATE_KEY, {})
    with catalog.connection(settings.dsn, source) as conn:
        tables = catalog.describe_tables(conn, source, settings.schema, names)
        catalog.check_publication(conn, source, settings.publication, tables)
        stored = state.get("lsn")
        if settings.resnapshot or stored is None:
            yield from _snapshot(conn, source, settings, tables, state, quarantine)
            return
        _check_slot(source, settings, catalog.wait_until_idle(conn, settings.slot_name), stored)
        target = catalog.current_wal_lsn(conn)

    changes = {
        table.name: ChangeLog(table.schema, table.name, table.primary_key, settings.delete_mode == "hard")
        for table in tables
    }
    result = stream_changes(
        settings.dsn,
        source,
        settings.slot_name,
        settings.publication,
        stored,
        target,
        changes,
        settings.max_changes_per_run,
    )
    for table in changes.values():
        for columns, data, unresolved in table.tables():
            filled = data if unresolved is None else _fill_from_warehouse(source, table, data, unresolved)
            # a bad image is left out: the warehouse keeps the key's last good row
            good = quarantine.screen(table.name, filled, table.primary_key)
            yield _with_hints(good, table.name, table.primary_key, columns, "merge", settings)
    end_lsn = max(result.end_lsn or stored, _confirmed_by_the_driver(source, settings, stored))
    if end_lsn > stored:
        state["lsn"] = end_lsn
    if result.truncates:
        state.setdefault("truncates", {}).update(result.truncates)
    _LAST_RUN[source] = RunLog(
        changes=result.changes,
        transactions=result.transactions,
        truncated=result.truncates,
        complete=result.complete,
    )


def _confirmed_by_the_driver(source: str, settings: CdcSettings, stored: int) -> int:
    """Where the slot stands after the read, which can be past the stored LSN.

    Why: when nothing arrived since our last acknowledgement, psycopg2 moves its flush
    position to the WAL end a server keepalive reports and sends it with the next feedback
    (psycopg2's replication_protocol.c; no setting turns it off). That is safe — every
    transaction committed before that position was sent before the keepalive, and none was
    — but the slot is then ahead of the LSN stored with the data, and the next run took it
    for a lost slot (found by the reliability campaign: an idle read under load). Storing
    the position with this load keeps slot and warehouse equal.
    """
    with catalog.connection(settings.dsn, source) as conn:
        slot = catalog.slot_info(conn, settings.slot_name)
    confirmed = slot.confirmed_flush_lsn if slot is not None else None
    return confirmed if confirmed is not None else stored


def _check_slot(source: str, settings: CdcSettings, slot: SlotInfo | None, stored: int) -> None:
    """The slot must still hold every change after the stored LSN, or only a re-snapshot helps."""
    name = settings.slot_name
    if slot is None:
        raise SlotLost(f"source {source}: replication slot {name} does not exist; {remediation(source)}")
    if slot.lost:
        raise SlotLost(
            f"source {source}: replication slot {name} was invalidated (wal_status={slot.wal_status}: "
            f"it fell behind max_slot_wal_keep_size); {remediation(source)}"
        )
    if slot.confirmed_flush_lsn is not None and slot.confirmed_flush_lsn > stored:
        raise SlotLost(
            f"source {source}: replication slot {name} already confirmed "
            f"{format_lsn(slot.confirmed_flush_lsn)}, past the warehouse's {format_lsn(stored)} "
            "(the slot was recreated or used by another consumer, or the warehouse was restored); "
            f"{remediation(source)}"
        )


def _snapshot(
    conn: Any,
    source: str,
    settings: CdcSettings,
    tables: list[TableInfo],
    state: dict[str, Any],
    quarantine: Quarantine,
) -> Iterator[Any]:
    """(Re)create the slot and load every table as of its starting point, replacing the warehouse's."""
    catalog.drop_slot(conn, source, settings.slot_name)
    replication = replication_connection(settings.dsn, source)
    try:
        consistent_point, snapshot_name = create_slot(replication, source, settings.slot_name)
        reader = catalog.connect(settings.dsn, source)
        open_snapshot(reader, snapshot_name)
    finally:
        replication.close()  # the snapshot is imported: the exporting session may end
    try:
        for table in tables:
            names = [column.name for column in table.columns]
            batches = 0
            # a row must fit one read block: room for an oversized value to be seen and rejected
            block = max(READ_BLOCK_BYTES, 2 * settings.max_string_bytes + (1 << 20))
            for batch in read_table(reader, table, block):
                batches += 1
                yield _with_hints(
                    _stamp(quarantine.screen(table.name, batch, table.primary_key), consistent_point),
                    table.name,
                    table.primary_key,
                    table.columns,
                    "replace",
                    settings,
                )
            if not batches:  # an empty table still replaces what the warehouse holds
                empty = pa.Table.from_pylist([], schema=_empty_schema(table, names))
                yield _with_hints(
                    _stamp(empty, consistent_point),
                    table.name,
                    table.primary_key,
                    table.columns,
                    "replace",
                    settings,
                )
    except psycopg2.Error as exc:
        # a dropped connection (a restarted server) is worth a retry, which takes a new snapshot
        lost = isinstance(exc, psycopg2.OperationalError | psycopg2.InterfaceError)
        raise (SourceUnreachable if lost else SourceError)(
            f"source {source}: snapshot failed: {(str(exc).strip().splitlines() or ['?'])[0]}"
        ) from None
    finally:
        reader.close()
    state.clear()
    state["lsn"] = consistent_point
    _LAST_RUN[source] = RunLog(snapshot=True)


def _empty_schema(table: TableInfo, names: list[str]) -> pa.Schema:
    return pa.schema(
        [
            pa.field(n, arrow_type(c.type_oid, c.type_modifier))
            for n, c in zip(names, table.columns, strict=True)
        ]
    )


def _stamp(batch: pa.Table, lsn: int) -> pa.Table:
    """Snapshot rows: written at the slot's starting point, not deleted."""
    rows = batch.num_rows
    batch = batch.append_column(LSN_COLUMN, pa.array([lsn] * rows, type=pa.int64()))
    return batch.append_column(DELETED_COLUMN, pa.array([False] * rows, type=pa.bool_()))


def _with_hints(
    item: pa.Table,
    table: str,
    primary_key: tuple[str, ...],
    columns: tuple[Column, ...],
    disposition: str,
    settings: CdcSettings,
) -> Any:
    """Route an Arrow table to its warehouse table with its key, JSON and delete hints.

    Each run yields every key at most once per table, yet dlt is told its staging data is
    NOT de-duplicated (``x-stage-data-deduplicated`` False, also overriding a True that
    earlier versions stored in the schema): a worker killed after a staging job's rows were
    committed but before dlt recorded the job as done re-runs the job when the package
    resumes, and only dlt's ROW_NUMBER() pass by primary key keeps those rows from reaching
    the table twice (tests/integration/test_cdc_crash.py found it).
    """
    column_hints: dict[str, Any] = {
        column.name: hints for column in columns if (hints := dlt_column_hints(column.type_oid))
    }
    for name in primary_key:
        column_hints[name] = {**column_hints.get(name, {}), "nullable": False}
    column_hints[LSN_COLUMN] = {"data_type": "bigint"}
    # hard_delete means something only to a merge (dlt warns about it on a replace).
    hard_delete = disposition == "merge" and settings.delete_mode == "hard"
    column_hints[DELETED_COLUMN] = {"data_type": "bool", "hard_delete": hard_delete}
    hints = dlt.mark.make_hints(
        table_name=table,
        write_disposition=disposition,
        primary_key=list(primary_key),
        columns=column_hints,
        additional_table_hints={DEDUPLICATED_HINT: False},
    )
    return dlt.mark.with_hints(item, hints, create_table_variant=True)


def _fill_from_warehouse(
    source: str, table: ChangeLog, data: pa.Table, unresolved: UnresolvedRows
) -> pa.Table:
    """Unchanged TOASTed values whose last image is in the warehouse: copy them from there.

    The warehouse holds exactly the state at the stored LSN (dlt commits rows and LSN
    together, and this run's load has not started), which is the value the update left
    unchanged.
    """
    wanted = sorted(unresolved.masks)
    found = _warehouse_values(table, wanted, set(unresolved.keys.values()))
    for name, mask in unresolved.masks.items():
        position = data.column_names.index(name)
        replacements = []
        for row, flagged in enumerate(mask):
            if not flagged:
                continue
            key = unresolved.keys[row]
            if key not in found:
                row_key = dict(zip(table.primary_key, key, strict=True))
                raise SourceError(
                    f"source {source}: table {table.name}, row {row_key}: "
                    f"column {name} was unchanged but the warehouse has no such row; {remediation(source)}"
                )
            replacements.append(found[key][wanted.index(name)])
        column = data.column(position).combine_chunks()
        filled = pc.replace_with_mask(column, pa.array(mask), pa.array(replacements, type=column.type))
        data = data.set_column(position, name, filled)
    return data


def _warehouse_values(
    table: ChangeLog, columns: list[str], keys: set[tuple[str, ...]]
) -> dict[tuple[str, ...], tuple[Any, ...]]:
    """Current warehouse values of ``columns`` for rows with these primary keys (as text)."""
    pipeline = dlt.current.pipeline()
    naming = dlt.current.source_schema().naming
    found: dict[tuple[str, ...], tuple[Any, ...]] = {}
    with pipeline.sql_client() as client:
        qualified = client.make_qualified_table_name(naming.normalize_table_identifier(table.name))
        key_sql = [client.escape_column_name(naming.normalize_identifier(k)) for k in table.primary_key]
        value_sql = [client.escape_column_name(naming.normalize_identifier(c)) for c in columns]
        first_values = sorted({key[0] for key in keys})
        for start in range(0, len(first_values), LOOKUP_CHUNK):
            chunk = first_values[start : start + LOOKUP_CHUNK]
            query = (
                f"select {', '.join(key_sql + value_sql)} from {qualified} "
                f"where cast({key_sql[0]} as varchar) in ({', '.join(['%s'] * len(chunk))})"
            )
            for row in client.execute_sql(query, *chunk) or []:
                key = tuple(str(value) for value in row[: len(key_sql)])
                if key in keys:
                    found[key] = tuple(row[len(key_sql) :])
    return found


@dataclass
class CdcReport:
    """What the run report says about a CDC source after its load."""

    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    slot_lag_bytes: dict[str, int] = field(default_factory=dict)


def after_load(pipeline: dlt.Pipeline, source: str, settings: CdcSettings | None = None) -> CdcReport:
    """After a successful load: apply stored TRUNCATEs and report slot lag and truncations."""
    settings = settings or resolve_settings(source)
    state = pipeline.state.get("sources", {}).get(source, {}).get(STATE_KEY, {})
    report = CdcReport()
    run = _LAST_RUN.pop(source, RunLog())
    _apply_truncates(pipeline, source, state.get("truncates", {}), settings.delete_mode)
    for table, lsn in sorted(run.truncated.items()):
        effect = "deleted from" if settings.delete_mode == "hard" else "flagged _cdc_deleted in"
        report.warnings.append(
            f"{source}: TRUNCATE of {settings.schema}.{table} at {format_lsn(lsn)}: rows written before it "
            f"were {effect} raw_{source}.{table}"
        )
    if run.snapshot:
        report.notes.append(f"{source}: initial snapshot loaded; slot {settings.slot_name} created")
    elif run.changes:
        report.notes.append(f"{source}: {run.changes:,} changes in {run.transactions:,} transactions")
    if not run.complete:
        report.notes.append(
            f"{source}: stopped at max_changes_per_run={settings.max_changes_per_run:,}; "
            "the next run continues"
        )
    with catalog.connection(settings.dsn, source) as conn:
        slot = catalog.slot_info(conn, settings.slot_name)
    if slot is not None:
        report.slot_lag_bytes[settings.slot_name] = slot.retained_bytes
        lag = (
            f"{source}: slot {settings.slot_name} retains {_mb(slot.retained_bytes)} of WAL "
            f"(alert above {_mb(settings.lag_alert_bytes)}; acknowledged at the start of the next run)"
        )
        report.notes.append(lag)
        if slot.retained_bytes > settings.lag_alert_bytes:
            report.warnings.append(f"ALERT {lag}")
    return report


def _apply_truncates(
    pipeline: dlt.Pipeline, source: str, truncates: dict[str, int], delete_mode: str
) -> None:
    """Remove (or flag) rows written before each table's last TRUNCATE; repeating it changes nothing."""
    if not truncates:
        return
    schema = pipeline.schemas.get(source) or pipeline.default_schema
    naming = schema.naming
    with pipeline.sql_client() as client:
        for table, lsn in truncates.items():
            qualified = client.make_qualified_table_name(naming.normalize_table_identifier(table))
            lsn_column = client.escape_column_name(LSN_COLUMN)
            if delete_mode == "hard":
                client.execute_sql(f"delete from {qualified} where {lsn_column} < %s", lsn)
            else:
                flag = client.escape_column_name(DELETED_COLUMN)
                client.execute_sql(
                    f"update {qualified} set {flag} = true where {lsn_column} < %s and not {flag}", lsn
                )


def _mb(size: int) -> str:
    return f"{size / (1 << 20):,.1f} MB"
