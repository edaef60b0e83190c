"""The audit trail in the warehouse: every load and every contract verdict, one row each.

Why in the warehouse and not in Prefect: it is what freshness SLAs, ``elt status`` and
analysts query, next to the data it describes, and it survives a rebuilt Prefect server.
Written through dlt (append), so it works the same on DuckDB, Snowflake and BigQuery; a
warehouse with a cheaper way to add a few rows to a table dlt made uses it
(``Warehouse.append_rows``: DuckDB):

* ``elt_audit.loads``: run id, source, dataset, table, rows, started/finished, outcome, error
* ``elt_audit.contracts``: run id, table, passed, failed checks, checked at
* ``elt_audit.backfills``: the chunks of each backfill that are loaded (flows/backfill.py)
* ``elt_audit.dbt_nodes``, ``publishes``, ``build_inputs``, ``dbt_manifests``: what each
  dbt build did
  (flows/build_state.py)
* ``elt_audit.stages``: each run's stages, how long they took and how they ended
* ``elt_audit.cdc_slots``: the WAL each CDC source's replication slot retains, per load
* ``elt_audit.profiles``, ``anomalies``, ``anomaly_acks``: the column profiles of each
  changed table, the anomaly verdicts drawn from them, and the changes people accepted
  (flows/profiles.py, flows/anomalies.py)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import dlt
from dlt.destinations.exceptions import DatabaseUndefinedRelation

from dlt_sources.common.packages import forget_state_unknown_to_warehouse
from flows.config import Settings
from flows.pipelines import warehouse_pipeline
from flows.redact import first_line
from flows.report import RunSummary
from flows.results import ContractResult

logger = logging.getLogger(__name__)

DATASET = "elt_audit"
LOADED, FAILED = "loaded", "failed"


@dataclass(frozen=True)
class LoadRecord:
    """One table of one source in one run; a failed source has one row with no table."""

    run_id: str
    source: str
    dataset: str
    table_name: str | None
    rows: int
    started_at: datetime
    finished_at: datetime
    outcome: str
    error: str | None = None


@dataclass(frozen=True)
class ContractRecord:
    run_id: str
    table_name: str
    passed: bool
    failed_checks: str | None
    checked_at: datetime


@dataclass(frozen=True)
class StageRecord:
    run_id: str
    flow_name: str
    stage: str
    seconds: float
    status: str
    finished_at: datetime


@dataclass(frozen=True)
class SlotRecord:
    """How much WAL a CDC source's slot held back after its load (``elt_cdc_slot_lag_bytes``)."""

    run_id: str
    source: str
    slot_name: str
    retained_bytes: int
    checked_at: datetime


@dataclass(frozen=True)
class ProfileRecord:
    """One metric of one column (``column_name`` None: of the table) in one profile."""

    run_id: str
    dataset: str
    table_name: str
    column_name: str | None
    metric: str
    value: float | None
    detail: str | None  # JSON: the top values of a low-cardinality column
    table_rows: int
    sampled_rows: int
    profiled_at: datetime


@dataclass(frozen=True)
class AnomalyRecord:
    """One series' verdict in one run: the observed value, its band and score, the level
    (``learning``, ``ok``, ``warn``, ``fail``)."""

    run_id: str
    dataset: str
    table_name: str
    metric: str
    value: float
    expected: float | None
    lower: float | None
    upper: float | None
    score: float | None
    level: str
    observed_at: datetime
    checked_at: datetime


@dataclass(frozen=True)
class AnomalyAck:
    """``elt anomalies ack``: a person accepted a series' new level at ``acked_at``."""

    dataset: str
    table_name: str
    metric: str
    acked_at: datetime
    acked_by: str
    note: str | None


_COLUMNS = {
    "loads": {
        "table_name": {"data_type": "text", "nullable": True},
        "error": {"data_type": "text", "nullable": True},
        "started_at": {"data_type": "timestamp"},
        "finished_at": {"data_type": "timestamp"},
        "rows": {"data_type": "bigint"},
    },
    "contracts": {
        "failed_checks": {"data_type": "text", "nullable": True},
        "checked_at": {"data_type": "timestamp"},
    },
    "dbt_nodes": {"recorded_at": {"data_type": "timestamp"}},
    "build_inputs": {"recorded_at": {"data_type": "timestamp"}},
    "publishes": {"published_at": {"data_type": "timestamp"}},
    "dbt_manifests": {"recorded_at": {"data_type": "timestamp"}, "manifest": {"data_type": "text"}},
    "stages": {"seconds": {"data_type": "double"}, "finished_at": {"data_type": "timestamp"}},
    "cdc_slots": {"retained_bytes": {"data_type": "bigint"}, "checked_at": {"data_type": "timestamp"}},
    "profiles": {
        "column_name": {"data_type": "text", "nullable": True},
        "value": {"data_type": "double", "nullable": True},
        "detail": {"data_type": "text", "nullable": True},
        "table_rows": {"data_type": "bigint"},
        "sampled_rows": {"data_type": "bigint"},
        "profiled_at": {"data_type": "timestamp"},
    },
    "anomalies": {
        "value": {"data_type": "double"},
        "expected": {"data_type": "double", "nullable": True},
        "lower": {"data_type": "double", "nullable": True},
        "upper": {"data_type": "double", "nullable": True},
        "score": {"data_type": "double", "nullable": True},
        "observed_at": {"data_type": "timestamp"},
        "checked_at": {"data_type": "timestamp"},
    },
    "column_lineage": {
        "input_namespace": {"data_type": "text", "nullable": True},
        "input_dataset": {"data_type": "text", "nullable": True},
        "input_field": {"data_type": "text", "nullable": True},
        "subtype": {"data_type": "text", "nullable": True},
        "masking": {"data_type": "bool"},
        "recorded_at": {"data_type": "timestamp"},
    },
    "anomaly_acks": {"acked_at": {"data_type": "timestamp"}, "note": {"data_type": "text", "nullable": True}},
    "backfills": {
        "chunk_start": {"data_type": "timestamp"},
        "chunk_end": {"data_type": "timestamp"},
        "finished_at": {"data_type": "timestamp"},
        "rows": {"data_type": "bigint"},
    },
}


# tables that keep only the latest record: each is large and only the latest is read
_LATEST_ONLY = frozenset({"dbt_manifests"})


def now() -> datetime:
    return datetime.now(UTC)


def record(settings: Settings, table: str, records: Sequence[Any], dataset: str = DATASET) -> None:
    """Append ``records`` (dataclasses) to ``elt_audit.<table>`` (``loads``, ``contracts``, ``backfills``)."""
    record_tables(settings, {table: records}, dataset)


def record_tables(settings: Settings, tables: Mapping[str, Sequence[Any]], dataset: str = DATASET) -> None:
    """Append records (dataclasses) to several audit tables in one write (or replace, for the
    tables that keep only their latest record); ``dataset`` only for the scratch registry.

    The warehouse's own cheap append first (``Warehouse.append_rows``); dlt when it has none
    or a table or column is still to be created.
    """
    rows = {table: [asdict(item) for item in records] for table, records in tables.items() if records}
    if not rows or settings.warehouse.append_rows(settings, settings.dataset(dataset), rows, _LATEST_ONLY):
        return
    resources = [
        dlt.resource(
            table_rows,
            name=table,
            write_disposition="replace" if table in _LATEST_ONLY else "append",
            columns=_COLUMNS.get(table, {}),
        )
        for table, table_rows in rows.items()
    ]
    pipeline = _pipeline(settings, dataset)
    if forget_state_unknown_to_warehouse(pipeline):  # a stale local schema would skip CREATE TABLE
        pipeline = _pipeline(settings, dataset)
    pipeline.run(resources, loader_file_format=settings.loader_file_format).raise_on_failed_jobs()


def record_contracts(settings: Settings, results: list[ContractResult], run_id: str) -> None:
    """Append contract verdicts; never raises, so it can't hide the failure being reported."""
    checked_at = now()
    verdicts = [
        ContractRecord(
            run_id,
            result.dataset,
            result.passed,
            None if result.passed else result.failure_message(),
            checked_at,
        )
        for result in results
    ]
    try:
        record(settings, "contracts", verdicts)
    except Exception as exc:
        logger.warning("could not record %d contract verdicts in %s: %s", len(verdicts), DATASET, exc)


def record_run(
    settings: Settings,
    summary: RunSummary,
    run_id: str,
    flow_name: str,
    observations: Mapping[str, Sequence[Any]],
) -> None:
    """A run's stage timings and CDC slot lag (the metrics, the stage-duration anomalies) and
    its other ``observations`` (profiles, anomaly verdicts, new column lineage), in one write:
    the first run creates every table in one dlt load, later ones append cheaply. Never
    raises, so it can't hide the failure being reported."""
    finished = now()
    stages = [
        StageRecord(run_id, flow_name, stage.name, stage.seconds, stage.status, finished)
        for stage in summary.stages
    ]
    slots = [
        SlotRecord(run_id, result.source, slot, lag, result.finished_at or finished)
        for result in summary.ingests
        for slot, lag in result.slot_lag_bytes.items()
    ]
    try:
        record_tables(settings, {"stages": stages, "cdc_slots": slots, **observations})
    except Exception as exc:
        logger.warning("could not record the run's observations in %s: %s", DATASET, first_line(exc))


def last_successful_loads(settings: Settings) -> dict[str, datetime]:
    """When each source last loaded successfully (0 new rows counts: the source was current)."""
    rows = query_audit(
        settings,
        "loads",
        "select source, max(finished_at) from {table} where outcome = 'loaded' group by source",
    )
    return {source: utc(finished) for source, finished in rows}


def latest_contracts(settings: Settings) -> dict[str, tuple[bool, str | None, datetime]]:
    """Per table, the verdict of its latest contract check: (passed, failed checks, when)."""
    rows = query_audit(
        settings,
        "contracts",
        "select t.table_name, t.passed, t.failed_checks, t.checked_at from {table} as t"
        " where t.checked_at = ("
        "select max(l.checked_at) from {table} as l where l.table_name = t.table_name)",
    )
    return {table: (bool(passed), failed, utc(checked)) for table, passed, failed, checked in rows}


def latest_loads(settings: Settings) -> dict[tuple[str, str], tuple[int, datetime]]:
    """Per (source, table), the rows and finish time of its latest successful load."""
    rows = query_audit(
        settings,
        "loads",
        "select t.source, t.table_name, t.rows, t.finished_at from {table} as t"
        " where t.outcome = 'loaded' and t.table_name is not null and t.finished_at = ("
        "select max(l.finished_at) from {table} as l where l.source = t.source"
        " and l.table_name = t.table_name and l.outcome = 'loaded')",
    )
    return {(source, table): (int(count), utc(finished)) for source, table, count, finished in rows}


def query_audit(
    settings: Settings, table: str, sql: str, dataset: str = DATASET, **others: str
) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` with ``{table}`` the qualified audit table; none before the first record.

    ``others`` name more audit tables the SQL reads (``{name}`` placeholders); all must exist.
    """
    with audit_reader(settings, dataset) as read:
        return read(table, sql, **others)


AuditRead = Callable[..., list[tuple[Any, ...]]]


@contextmanager
def audit_reader(settings: Settings, dataset: str = DATASET) -> Iterator[AuditRead]:
    """``query_audit`` for several queries over one warehouse connection (each a DuckDB file
    open, a cloud login, saved): yields ``read(table, sql, **others)``."""
    with _pipeline(settings, dataset).sql_client() as client:

        def read(table: str, sql: str, **others: str) -> list[tuple[Any, ...]]:
            names = {"table": table, **others}
            qualified = {key: client.make_qualified_table_name(name) for key, name in names.items()}
            try:
                return [tuple(row) for row in client.execute_sql(sql.format(**qualified)) or []]
            except DatabaseUndefinedRelation:
                return []

        yield read


def query_warehouse(settings: Settings, sql: str) -> list[tuple[Any, ...]]:
    """Rows of any read-only ``sql`` (an information schema), through the audit pipeline's client."""
    with _pipeline(settings).sql_client() as client:
        return [tuple(row) for row in client.execute_sql(sql) or []]


def schema_columns(
    settings: Settings, schemas: set[str], execute: Callable[[str], Any]
) -> list[tuple[str, str, str, str]]:
    """(schema, table, column, type) of every table in ``schemas``, lower-case names but the
    column's, in column order, from each warehouse's information schema (``execute`` runs SQL
    on a connection the caller already has)."""
    wanted = sorted(schemas)
    listed = ", ".join(f"'{schema.lower()}'" for schema in wanted)
    found = []
    for info in dict.fromkeys(settings.warehouse.information_schema(settings, s) for s in wanted):
        rows = execute(
            f"select table_schema, table_name, column_name, data_type from {info}.columns"
            f" where lower(table_schema) in ({listed}) order by table_schema, table_name, ordinal_position"
        )
        found += [(schema.lower(), table.lower(), column, kind) for schema, table, column, kind in rows or []]
    return found


def _pipeline(settings: Settings, dataset: str = DATASET) -> dlt.Pipeline:
    return warehouse_pipeline(settings, dataset, dataset)


def utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
