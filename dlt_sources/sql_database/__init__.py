"""SQL databases without Python: one YAML file per database in ``dlt_sources/sql_database/``.

Each ``<name>.yml`` (see README.md and ``examples/``) becomes the dlt source ``<name>``
loading ``raw_<name>``: one resource per listed table, merged on its primary key when it
has a cursor (dlt's ``incremental``, state kept in the warehouse), replaced on every run
when it has none. PostgreSQL is read through ADBC and MySQL/MariaDB through connectorx as
Arrow record batches, which dlt writes straight to parquet without its row-by-row
normalizer; column types come from the table's reflected types, not from the drivers
(columns.py). Other SQLAlchemy databases fall back to dlt's ``sql_table`` (pyarrow).

``ELT_SQL_SOURCES_DIR`` points the loader at another folder (tests, deployments).
A backfill reloads one cursor window without moving the stored cursor: the setting
``sources.<name>.backfill`` (``SOURCES__<NAME>__BACKFILL="<start>/<end>"``) or
``sql_database_source(config, backfill=Window(start, end))``.
"""

# No `from __future__ import annotations`: dlt binds the incremental argument of a
# resource function by resolving its annotation at runtime.
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import dlt
import pyarrow as pa
import sqlalchemy as sa
from dlt.common.time import ensure_pendulum_date, ensure_pendulum_datetime
from dlt.extract.source import DltSource

from dlt_sources.common.arrow import quiet_expected_hint_warnings
from dlt_sources.common.background import read_ahead
from dlt_sources.common.declared import declared_in
from dlt_sources.errors import SourceError
from dlt_sources.rest.config import PLACEHOLDER_RE, resolve_placeholders

from .columns import ColumnPlan, Conformer, plan_columns
from .config import DatabaseConfig, SqlConfigError, TableConfig, load_file
from .cursor import MARK_STATE_KEY, CursorMark, MarkTracker, split_range
from .reader import MYSQL_DIALECTS, PREFETCH_BATCHES, Database, connect

__all__ = [
    "SqlConfigError",
    "Window",
    "declared_databases",
    "load_file",
    "sources_dir",
    "sql_database_source",
]

DEFAULT_DIR = Path(__file__).resolve().parent
SOURCES_DIR_ENV = "ELT_SQL_SOURCES_DIR"
DEDUPLICATED_HINT = "x-stage-data-deduplicated"


def sources_dir() -> Path:
    return Path(os.environ.get(SOURCES_DIR_ENV) or DEFAULT_DIR)


def declared_databases(directory: Path | None = None) -> dict[str, Callable[[], DltSource]]:
    """Source name -> factory, one per ``*.yml`` in the folder; every file is validated now.

    Credentials are resolved and the database contacted only when a factory is called.
    """
    return declared_in(
        directory or sources_dir(), SOURCES_DIR_ENV, load_file, sql_database_source, SqlConfigError
    )


@dataclass(frozen=True)
class Window:
    """A backfill: rows whose cursor is at or after ``start`` and before ``end``."""

    start: Any
    end: Any

    @classmethod
    def parse(cls, text: str, setting: str) -> "Window":
        start, sep, end = str(text).partition("/")
        if not sep or not start.strip() or not end.strip():
            raise SourceError(f"{setting}={text!r} must be '<start>/<end>', e.g. 2024-01-01/2024-02-01")
        return cls(start.strip(), end.strip())


def configured_backfill(name: str) -> Window | None:
    """The window in ``sources.<name>.backfill``, if one is set."""
    setting = f"sources.{name}.backfill"
    value = dlt.config.get(setting)
    return Window.parse(value, setting) if value else None


def sql_database_source(
    config: DatabaseConfig, tables: Sequence[str] | None = None, backfill: Window | None = None
) -> DltSource:
    """The dlt source of one validated file; resolves the credentials and connects now.

    ``tables`` limits the run to some tables; ``backfill`` (default: the
    ``sources.<name>.backfill`` setting) reloads that window of every incremental table
    (tables without a cursor are skipped) and leaves the stored cursors as they were.
    """
    unknown = sorted(set(tables or ()) - {table.name for table in config.tables})
    if unknown:
        raise SqlConfigError(f"{config.file}: no table(s) {', '.join(unknown)} in this file")
    backfill = backfill or configured_backfill(config.name)
    placeholder = PLACEHOLDER_RE.fullmatch(config.credentials)
    setting = placeholder.group(2) if placeholder else f"{config.file.name}: credentials"
    credentials = resolve_placeholders(config.credentials, str(config.file))
    database = connect(config.name, setting, credentials, config.backend)
    chosen = [config.table(name) for name in tables] if tables else list(config.tables)
    if backfill is not None:
        chosen = [table for table in chosen if table.incremental]
    inspector = sa.inspect(database.engine)
    resources = [_resource(database, config, table, inspector, backfill) for table in chosen]
    quiet_expected_hint_warnings(table.name for table in chosen)
    return dlt.source(lambda: resources, name=config.name, max_table_nesting=0)()


@dataclass(frozen=True)
class _Table:
    """A table as reflected: what is selected from it and how its values are typed."""

    source: str
    config: TableConfig
    ref: sa.TableClause
    plans: tuple[ColumnPlan, ...]
    types: dict[str, Any]

    def column(self, name: str) -> sa.ColumnClause[Any]:
        return sa.column(name, self.types[name])

    def select(self, *conditions: sa.ColumnElement[bool]) -> sa.Select[Any]:
        query = sa.select(*(plan.expression for plan in self.plans)).select_from(self.ref)
        return query.where(*self.base_conditions, *conditions)

    @property
    def base_conditions(self) -> list[sa.ColumnElement[bool]]:
        row_filter = self.config.filter
        return [sa.text(f"({row_filter})")] if row_filter else []

    def literal(self, column: str, value: Any) -> sa.ColumnElement[Any]:
        return sa.literal(value, self.types[column])


def _reflect(database: Database, config: DatabaseConfig, table: TableConfig, inspector: Any) -> _Table:
    """Reflect one table once; a configured column that the table lacks is named here."""
    where = f"{config.file}: table `{table.name}`"
    try:
        reflected = inspector.get_columns(table.name, schema=config.schema)
    except sa.exc.NoSuchTableError:
        raise SqlConfigError(
            f"{where}: the database has no such table (schema {config.schema or 'default'})"
        ) from None
    names = [column["name"] for column in reflected]
    wanted = [("primary_key", k) for k in table.primary_key] + [
        ("exclude_columns", c) for c in table.exclude_columns
    ]
    wanted += [
        (field, getattr(table, field)) for field in ("cursor", "partition_column") if getattr(table, field)
    ]
    for field, column in wanted:
        if column not in names:
            raise SqlConfigError(
                f"{where}: `{field}` names column `{column}`, which the table does not have "
                f"(columns: {', '.join(names)})"
            )
    json_text = _mariadb_json_columns(database, config.schema, table.name)
    plans = tuple(plan_columns(reflected, table.exclude_columns, json_text))
    return _Table(
        source=config.name,
        config=table,
        ref=sa.table(table.name, schema=config.schema),
        plans=plans,
        types={column["name"]: column["type"] for column in reflected},
    )


def _mariadb_json_columns(database: Database, schema: str | None, table: str) -> frozenset[str]:
    """Columns MariaDB declares JSON: it stores them as LONGTEXT with a json_valid() check."""
    if database.dialect not in MYSQL_DIALECTS:
        return frozenset()
    query = sa.text(
        "select check_clause from information_schema.check_constraints "
        "where constraint_schema = coalesce(:schema, database()) and table_name = :table"
    )
    with database.engine.connect() as conn:
        clauses = [row[0] for row in conn.execute(query, {"schema": schema, "table": table})]
    found = set()
    for clause in clauses:
        text = clause.strip().lower()
        if text.startswith("json_valid("):
            found.add(text[len("json_valid(") :].rstrip(")").strip('`" '))
    return frozenset(found)


def _cursor_value(value: Any, sql_type: Any, where: str) -> Any:
    """A YAML or backfill value in the cursor column's type (what dlt compares in Arrow)."""
    if value is None:
        return None
    try:
        if isinstance(sql_type, sa.DateTime):
            moment = ensure_pendulum_datetime(value)
            return moment if sql_type.timezone else moment.naive()
        if isinstance(sql_type, sa.Date):
            return ensure_pendulum_date(value)
        if isinstance(sql_type, sa.Integer):
            return int(value)
    except (ValueError, TypeError):
        raise SqlConfigError(f"{where}: {value!r} is not a value of the cursor's type ({sql_type})") from None
    return value


def _resource(
    database: Database, config: DatabaseConfig, table: TableConfig, inspector: Any, backfill: Window | None
) -> Any:
    reflected = _reflect(database, config, table, inspector)
    options: dict[str, Any] = {
        "primary_key": list(table.primary_key),
        "write_disposition": table.write_disposition,
    }
    if database.backend == "sqlalchemy":
        return _dlt_sql_table(database, config, reflected, options, backfill)
    options["name"] = table.name
    options["columns"] = {plan.name: plan.hint for plan in reflected.plans}
    conform = Conformer(config.name, table.name, reflected.plans, table.primary_key)
    if not table.incremental:

        def read_all() -> Iterator[pa.Table]:
            yield from _read(database, reflected, conform, [], table.partitions)

        return dlt.resource(read_all, **options)()

    cursor_type = reflected.types[table.cursor]
    where = f"{config.file}: table `{table.name}`"
    incremental = dlt.sources.incremental(
        table.cursor,
        initial_value=_cursor_value(backfill.start if backfill else table.initial_value, cursor_type, where),
        end_value=_cursor_value(backfill.end, cursor_type, f"sources.{config.name}.backfill")
        if backfill
        else None,
        primary_key=(),  # no boundary hashing: the tiebreak mark (cursor.py) or the merge handles it
        on_cursor_value_missing="include",
    )

    def read(cursor: dlt.sources.incremental[Any]) -> Iterator[Any]:
        yield from _read_incremental(database, reflected, conform, cursor)

    return dlt.resource(read, **options)(cursor=incremental)


def _dlt_sql_table(
    database: Database,
    config: DatabaseConfig,
    table: _Table,
    options: dict[str, Any],
    backfill: Window | None,
) -> Any:
    """Any other SQLAlchemy database: dlt's own ``sql_table`` on its pyarrow backend (no
    fast driver exists); filter, exclusions, cursor and backfill mean the same."""
    from dlt.sources.sql_database import sql_table

    spec = table.config
    incremental = None
    if spec.incremental:
        cursor_type = table.types[spec.cursor]
        where = f"{config.file}: table `{spec.name}`"
        incremental = dlt.sources.incremental(
            spec.cursor,
            initial_value=_cursor_value(
                backfill.start if backfill else spec.initial_value, cursor_type, where
            ),
            end_value=_cursor_value(backfill.end, cursor_type, where) if backfill else None,
            on_cursor_value_missing="include",
        )

    def filtered(query: sa.Select[Any], _: sa.Table) -> sa.Select[Any]:
        return query.where(*table.base_conditions)

    return sql_table(
        credentials=database.engine,
        table=spec.name,
        schema=config.schema,
        backend="pyarrow",
        reflection_level="full_with_precision",
        incremental=incremental,
        excluded_columns=list(spec.exclude_columns) or None,
        query_adapter_callback=filtered,
        **options,
    )


def _read(
    database: Database,
    table: _Table,
    conform: Conformer,
    conditions: list[sa.ColumnElement[bool]],
    partitions: int,
) -> Iterator[pa.Table]:
    """The rows of ``table.select(*conditions)``, in ``partitions`` ranges of the partition column.

    Each range is its own connection and snapshot, read in its own thread. With a
    cursor, all ranges stop at the cursor's maximum taken first, so a row changed while
    the ranges are read is left for the next run instead of being missed (its new
    cursor value is above that maximum).
    """
    spec = table.config

    def stream(query: sa.Select[Any]) -> Iterator[pa.Table]:
        return (conform(batch) for batch in database.stream(query) if batch.num_rows)

    if partitions <= 1:
        yield from read_ahead([partial(stream, table.select(*conditions))], PREFETCH_BATCHES, "sql-reader")
        return
    bounded = list(conditions)
    if spec.cursor:
        cursor = table.column(spec.cursor)
        top_query = sa.select(sa.func.max(cursor)).select_from(table.ref)
        top = database.scalar_row(top_query.where(*table.base_conditions, *conditions))[0]
        if top is None:
            return
        bounded.append(cursor <= table.literal(spec.cursor, top))
    key = table.column(spec.partition_column)
    range_query = sa.select(sa.func.min(key), sa.func.max(key)).select_from(table.ref)
    low, high = database.scalar_row(range_query.where(*table.base_conditions, *bounded))
    if low is None:
        return
    ranges = split_range(int(low), int(high), partitions)
    queries = [table.select(*bounded, key.between(first, last)) for first, last in ranges]
    yield from read_ahead([partial(stream, query) for query in queries], PREFETCH_BATCHES, "sql-reader")


def _mark_holds(database: Database, table: _Table, start: Any, mark: CursorMark) -> bool:
    """Whether the rows at the last cursor value up to the mark's key are still the ones read."""
    spec = table.config
    column, key = table.column(spec.cursor), table.column(spec.primary_key[0])
    count = sa.select(sa.func.count()).select_from(table.ref)
    count = count.where(*table.base_conditions, column == table.literal(spec.cursor, start), key <= mark.key)
    return database.scalar_row(count)[0] == mark.count


def _read_incremental(
    database: Database, table: _Table, conform: Conformer, cursor: dlt.sources.incremental[Any]
) -> Iterator[Any]:
    """Rows from dlt's start value on, or one backfill window; keeps the tiebreak mark."""
    spec = table.config
    start, end = cursor.last_value, cursor.end_value
    backfilling = end is not None
    state = dlt.current.resource_state()
    use_mark = spec.cursor_tiebreak and not backfilling
    previous = CursorMark.from_state(state.get(MARK_STATE_KEY)) if use_mark else None
    column = table.column(spec.cursor)
    conditions: list[sa.ColumnElement[bool]] = []
    tiebreak_used = (
        previous is not None and previous.applies_to(start) and _mark_holds(database, table, start, previous)
    )
    if tiebreak_used:
        key = table.column(spec.primary_key[0])
        at_start = column == table.literal(spec.cursor, start)
        later = column > table.literal(spec.cursor, start)
        conditions.append(sa.or_(later, sa.and_(at_start, key > previous.key)))
    elif start is not None:
        conditions.append(column >= table.literal(spec.cursor, start))
    if end is not None:
        conditions.append(column < table.literal(spec.cursor, end))
    if not conditions:
        # The first read of the whole table: replace rather than merge. It is an exact
        # copy, and dlt loads it straight into the table instead of merging from staging.
        hints: dict[str, Any] = {"write_disposition": "replace"}
    else:  # one read gives each key once, so dlt may skip its ROW_NUMBER() de-duplication
        hints = {"additional_table_hints": {DEDUPLICATED_HINT: True}}
    # increments are small: one query, one snapshot; full reads and backfills use the ranges
    partitions = spec.partitions if not conditions or backfilling else 1
    tracker = MarkTracker(spec.cursor, spec.primary_key[0]) if use_mark else None
    batches = _read(database, table, conform, conditions, partitions)
    for index, batch in enumerate(batches):
        if tracker is not None:
            tracker.add(batch)
        yield dlt.mark.with_hints(batch, dlt.mark.make_hints(**hints)) if index == 0 else batch
    if tracker is not None:
        mark = tracker.mark(previous, start, tiebreak_used)
        if mark is None:
            state.pop(MARK_STATE_KEY, None)
        else:
            state[MARK_STATE_KEY] = mark.to_state()
