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
Malformed rows (a NULL or repeated configured key, a value no warehouse can hold) are
quarantined into ``raw_<name>._rejected_records`` or fail the run, per
``sources.<name>.bad_records`` (common/rejects.py, README.md "Bad rows").
"""

# No `from __future__ import annotations`: dlt binds the incremental argument of a
# resource function by resolving its annotation at runtime.
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import dlt
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from dlt.common.time import ensure_pendulum_date, ensure_pendulum_datetime
from dlt.extract.source import DltSource

from dlt_sources.common.arrow import quiet_expected_hint_warnings
from dlt_sources.common.background import read_ahead
from dlt_sources.common.declared import declared_in
from dlt_sources.common.lineage import Origin, database_namespace
from dlt_sources.common.rejects import DUPLICATE_KEY, Quarantine, configured
from dlt_sources.errors import SourceError
from dlt_sources.rest.config import PLACEHOLDER_RE, resolve_placeholders
from dlt_sources.spec import SourceSpec

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
# What PostgreSQL ("permission denied for table"), MySQL/MariaDB ("SELECT command denied")
# and most other databases answer when the role may not read a table or column.
_NOT_GRANTED = re.compile(r"permission denied|command denied|not authori[sz]ed|insufficient privilege", re.I)


def sources_dir() -> Path:
    return Path(os.environ.get(SOURCES_DIR_ENV) or DEFAULT_DIR)


def declared_databases(directory: Path | None = None) -> dict[str, SourceSpec]:
    """Source name -> registry record, one per ``*.yml`` in the folder; every file is validated now.

    Credentials are resolved and the database contacted only when a record's factory is called.
    """
    return declared_in(
        directory or sources_dir(),
        SOURCES_DIR_ENV,
        load_file,
        sql_database_source,
        SqlConfigError,
        lineage_origin,
    )


def lineage_origin(config: DatabaseConfig) -> Origin:
    """The database (``postgres://host:port/db``, no credentials) and each ``schema.table`` in it."""
    url = resolve_placeholders(config.credentials, str(config.file))
    prefix = f"{config.schema}." if config.schema else ""
    return Origin(database_namespace(url), {table: prefix + table for table in config.table_names})


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
    key_enforced: bool = True  # the database guarantees the configured key: unique, not null

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
            f"{where}: the database has no such table (schema {config.schema or 'default'}), or "
            f"the role of `{database.setting}` may not see it (MySQL hides tables it has no grant on)"
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
    ref = sa.table(table.name, schema=config.schema)
    _check_readable(database, ref, plans, where)
    return _Table(
        source=config.name,
        config=table,
        ref=ref,
        plans=plans,
        types={column["name"]: column["type"] for column in reflected},
        key_enforced=_key_enforced(inspector, config.schema, table, reflected),
    )


def _key_enforced(inspector: Any, schema: str | None, table: TableConfig, reflected: list[Any]) -> bool:
    """Whether a constraint makes the configured key unique and NOT NULL.

    Why: only then can the checks for repeated keys be skipped. A key declared only in the
    YAML is checked on every read (the NULL check is free: Arrow counts nulls; the repeat
    check costs one Arrow group-by over the keys read)."""
    wanted = set(table.primary_key)
    pk = inspector.get_pk_constraint(table.name, schema=schema) or {}
    if set(pk.get("constrained_columns") or ()) == wanted:
        return True
    not_null = {column["name"] for column in reflected if not column.get("nullable", True)}
    if not wanted <= not_null:
        return False
    uniques = [
        set(u.get("column_names") or ()) for u in inspector.get_unique_constraints(table.name, schema=schema)
    ]
    uniques += [
        set(i.get("column_names") or ())
        for i in inspector.get_indexes(table.name, schema=schema)
        if i.get("unique") and not (i.get("dialect_options") or {}).get("postgresql_where")
    ]
    return wanted in uniques


def _check_readable(database: Database, ref: sa.TableClause, plans: Sequence[ColumnPlan], where: str) -> None:
    """Select the planned columns of no row: a table or column the role may not read fails
    here, named, not as a driver's stack trace halfway through the load.

    Why: the source is meant to run as a read-only role granted SELECT on the configured
    tables only (README.md, least privilege), so a table left out of the grants is a
    setting to fix, not a crash.
    """
    probe = sa.select(*(plan.expression for plan in plans)).select_from(ref).where(sa.false())
    try:
        with database.engine.connect() as conn:
            conn.execute(probe).close()
    except sa.exc.DBAPIError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        if not _NOT_GRANTED.search(reason):
            raise
        raise SqlConfigError(
            f"{where}: the role of `{database.setting}` may not read it ({reason}); grant it SELECT on "
            "the table, or remove the table from the file"
        ) from None


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
    quarantine = configured(config.name)
    conform = Conformer(config.name, table.name, reflected.plans, table.primary_key, quarantine)
    if table.incremental and not reflected.key_enforced:
        # a repeated key is merged to one row: the newest cursor value wins
        cursor_hint = options["columns"].get(table.cursor, {})
        options["columns"][table.cursor] = {**cursor_hint, "dedup_sort": "desc"}
    if not table.incremental:

        def read_all() -> Iterator[Any]:
            quarantine.take()  # nothing left over from a failed run in this process
            batches = _read(database, reflected, conform, [], table.partitions)
            yield from _screened(reflected, quarantine, batches, merged=False)

        return quarantine.attach_to(dlt.resource(read_all, **options)())

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
        quarantine.take()
        yield from _read_incremental(database, reflected, conform, cursor, quarantine)

    return quarantine.attach_to(dlt.resource(read, **options)(cursor=incremental))


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


def _screened(table: _Table, quarantine: Quarantine, batches: Iterator[Any], merged: bool) -> Iterator[Any]:
    """``batches``, then the run's rejected rows; a key declared only in the YAML is checked
    for repeats across the whole read (one Arrow group-by at the end)."""
    key = list(table.config.primary_key)
    keys: list[pa.Table] | None = None if table.key_enforced else []
    for batch in batches:
        if keys is not None and isinstance(batch, pa.Table):
            keys.append(batch.select(key))
        elif keys is not None:  # a batch wrapped with hints
            keys.append(batch.data.select(key))
        yield batch
    if keys:
        _report_repeated_keys(table, quarantine, pa.concat_tables(keys), merged)
    rejected = quarantine.item()
    if rejected is not None:
        yield rejected


def _report_repeated_keys(table: _Table, quarantine: Quarantine, keys: pa.Table, merged: bool) -> None:
    """One ``duplicate_key`` record per key that more than one row shares."""
    names = keys.column_names
    counts = keys.group_by(names).aggregate([([], "count_all")])
    repeated = counts.filter(pc.greater(counts.column("count_all"), 1))
    outcome = (
        "the merge kept the row with the newest cursor value"
        if merged
        else "all were loaded (a full copy of the table)"
    )
    for row in repeated.to_pylist():
        record_key = ", ".join(f"{name}={row[name]}" for name in names)
        quarantine.reject(
            table.config.name,
            ", ".join(names),
            DUPLICATE_KEY,
            f"{row['count_all']} rows share this key, which the table does not enforce; {outcome}",
            record_key,
            {name: row[name] for name in names},
        )


def _read_incremental(
    database: Database,
    table: _Table,
    conform: Conformer,
    cursor: dlt.sources.incremental[Any],
    quarantine: Quarantine,
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
    if not conditions and table.key_enforced:
        # The first read of the whole table: replace rather than merge. It is an exact
        # copy, and dlt loads it straight into the table instead of merging from staging.
        hints: dict[str, Any] = {"write_disposition": "replace"}
    elif table.key_enforced:  # one read gives each key once, so dlt may skip its ROW_NUMBER() de-duplication
        hints = {"additional_table_hints": {DEDUPLICATED_HINT: True}}
    else:  # a key the database does not enforce may repeat: dlt de-duplicates (newest cursor wins)
        hints = {"additional_table_hints": {DEDUPLICATED_HINT: False}}
    # increments are small: one query, one snapshot; full reads and backfills use the ranges
    partitions = spec.partitions if not conditions or backfilling else 1
    tracker = MarkTracker(spec.cursor, spec.primary_key[0]) if use_mark else None
    batches = _read(database, table, conform, conditions, partitions)

    def hinted() -> Iterator[Any]:
        for index, batch in enumerate(batches):
            if tracker is not None:
                tracker.add(batch)
            yield dlt.mark.with_hints(batch, dlt.mark.make_hints(**hints)) if index == 0 else batch

    yield from _screened(table, quarantine, hinted(), merged=True)
    if tracker is not None:
        mark = tracker.mark(previous, start, tiebreak_used)
        if mark is None:
            state.pop(MARK_STATE_KEY, None)
        else:
            state[MARK_STATE_KEY] = mark.to_state()
