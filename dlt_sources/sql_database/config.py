"""Read and validate one database file (``dlt_sources/sql_database/<name>.yml``).

A file names the database's credentials (a ``{{ secrets.… }}`` placeholder, resolved
through dlt only when the source is built) and the tables to load, each with its
primary key, an optional cursor, row filter, excluded columns and partitioning. Every
key is checked here, and a mistake is reported with the file, the table and the
field, before anything connects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlt_sources.common.declared import OPERATIONS_KEYS, read_declaration, read_operations
from dlt_sources.common.privacy import SourcePrivacy
from dlt_sources.errors import SourceError
from dlt_sources.rest.config import PLACEHOLDER_RE
from dlt_sources.spec import FreshnessSla

TOP_KEYS = frozenset({"credentials", "schema", "backend", "tables"}) | OPERATIONS_KEYS
TABLE_KEYS = frozenset(
    {
        "name",
        "primary_key",
        "cursor",
        "initial_value",
        "filter",
        "exclude_columns",
        "partitions",
        "partition_column",
        "cursor_tiebreak",
    }
)
BACKENDS = ("auto", "adbc", "connectorx", "sqlalchemy")
IDENTIFIER_MAX = 128


class SqlConfigError(SourceError):
    """A database file is malformed; the message names the file, the table and the field."""


@dataclass(frozen=True)
class TableConfig:
    """How one table is loaded.

    No ``cursor``: every run reads the whole table and replaces it. With a cursor: dlt's
    incremental reads rows at or after the stored cursor value and merges them on the
    primary key. ``partitions`` > 1 reads a full load as that many ranges of the
    (integer) ``partition_column`` on as many connections at once.
    """

    name: str
    primary_key: tuple[str, ...]
    cursor: str | None = None
    initial_value: Any = None
    filter: str | None = None
    exclude_columns: tuple[str, ...] = ()
    partitions: int = 1
    partition_column: str | None = None
    cursor_tiebreak: bool = True

    @property
    def incremental(self) -> bool:
        return self.cursor is not None

    @property
    def write_disposition(self) -> str:
        return "merge" if self.incremental else "replace"


@dataclass(frozen=True)
class DatabaseConfig:
    """A validated file; ``credentials`` still holds its unresolved placeholder."""

    name: str
    file: Path
    credentials: str
    tables: tuple[TableConfig, ...]
    schema: str | None = None
    backend: str = "auto"
    schedule: str | None = None
    freshness: FreshnessSla | None = None
    # where its tables hold people (dlt_sources/common/privacy.py)
    privacy: SourcePrivacy = field(default_factory=dict)

    def table(self, name: str) -> TableConfig:
        return next(table for table in self.tables if table.name == name)

    @property
    def table_names(self) -> tuple[str, ...]:
        return tuple(table.name for table in self.tables)


def load_file(path: Path) -> DatabaseConfig:
    """Parse and validate one YAML file; raises :class:`SqlConfigError`."""
    return parse(read_declaration(path, SqlConfigError), path)


def parse(raw: Any, path: Path) -> DatabaseConfig:
    """Validate an already-parsed document (``path`` names the file in errors)."""
    if not isinstance(raw, dict):
        raise SqlConfigError(f"{path}: must be a mapping with `credentials` and `tables`")
    _only(raw, TOP_KEYS, f"{path}:")
    credentials = raw.get("credentials")
    if not isinstance(credentials, str) or not PLACEHOLDER_RE.fullmatch(credentials.strip()):
        raise SqlConfigError(
            f"{path}: `credentials` must be a placeholder such as "
            f'"{{{{ secrets.sources.{path.stem}.credentials }}}}" (a URL with a password does not '
            "belong in a committed file)"
        )
    schema = raw.get("schema")
    if schema is not None and not _is_identifier(schema):
        raise SqlConfigError(f"{path}: `schema` must be a database schema name, got {schema!r}")
    backend = raw.get("backend", "auto")
    if backend not in BACKENDS:
        raise SqlConfigError(f"{path}: `backend` must be one of {', '.join(BACKENDS)}, got {backend!r}")
    tables = raw.get("tables")
    if not isinstance(tables, list) or not tables:
        raise SqlConfigError(f"{path}: `tables` must be a non-empty list")
    parsed = tuple(_table(item, f"{path}: tables[{index}]") for index, item in enumerate(tables))
    names = [table.name for table in parsed]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise SqlConfigError(f"{path}: table(s) listed twice: {', '.join(repeated)}")
    schedule, freshness, privacy = read_operations(raw, path, SqlConfigError)
    return DatabaseConfig(
        name=path.stem,
        file=path,
        credentials=credentials.strip(),
        tables=parsed,
        schema=schema,
        backend=backend,
        schedule=schedule,
        freshness=freshness,
        privacy=privacy,
    )


def _only(mapping: dict[str, Any], allowed: frozenset[str], where: str) -> None:
    unknown = sorted(str(key) for key in mapping if key not in allowed)
    if unknown:
        raise SqlConfigError(
            f"{where} unknown field(s) {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))}); "
            "see dlt_sources/sql_database/README.md"
        )


def _is_identifier(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= IDENTIFIER_MAX and value.strip() == value


def _columns(value: Any, where: str, field: str) -> tuple[str, ...]:
    """A column name or a list of them."""
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names or not all(_is_identifier(n) for n in names):
        raise SqlConfigError(f"{where}: `{field}` must be a column name or a list of column names")
    return tuple(names)


def _table(item: Any, where: str) -> TableConfig:
    if not isinstance(item, dict):
        raise SqlConfigError(f"{where}: must be a mapping with at least `name` and `primary_key`")
    name = item.get("name")
    if not _is_identifier(name):
        raise SqlConfigError(f"{where}: `name` must be the table's name")
    where = f"{where.rsplit(':', 1)[0]}: table `{name}`"
    _only(item, TABLE_KEYS, f"{where}:")
    if "primary_key" not in item:
        raise SqlConfigError(f"{where}: `primary_key` is required (merges and partitions use it)")
    primary_key = _columns(item["primary_key"], where, "primary_key")
    cursor = item.get("cursor")
    if cursor is not None and not _is_identifier(cursor):
        raise SqlConfigError(f"{where}: `cursor` must be one column name (or left out for a full refresh)")
    if cursor is None:
        for field in ("initial_value", "cursor_tiebreak"):
            if field in item:
                raise SqlConfigError(f"{where}: `{field}` needs a `cursor`")
    row_filter = item.get("filter")
    if row_filter is not None and (not isinstance(row_filter, str) or not row_filter.strip()):
        raise SqlConfigError(f"{where}: `filter` must be an SQL condition such as \"status <> 'draft'\"")
    excluded = (
        _columns(item["exclude_columns"], where, "exclude_columns") if "exclude_columns" in item else ()
    )
    kept = set(primary_key) | ({cursor} if cursor else set())
    clash = sorted(kept & set(excluded))
    if clash:
        raise SqlConfigError(
            f"{where}: `exclude_columns` cannot exclude the primary key or the cursor ({', '.join(clash)})"
        )
    partitions = item.get("partitions", 1)
    if not isinstance(partitions, int) or isinstance(partitions, bool) or not 1 <= partitions <= 64:
        raise SqlConfigError(f"{where}: `partitions` must be a whole number from 1 to 64, got {partitions!r}")
    partition_column = item.get("partition_column")
    if partition_column is not None and not _is_identifier(partition_column):
        raise SqlConfigError(f"{where}: `partition_column` must be one column name")
    if partitions > 1 and partition_column is None and len(primary_key) != 1:
        raise SqlConfigError(
            f"{where}: `partitions` needs `partition_column` (an integer column) when the primary key "
            "has several columns"
        )
    tiebreak = item.get("cursor_tiebreak", True)
    if not isinstance(tiebreak, bool):
        raise SqlConfigError(f"{where}: `cursor_tiebreak` must be true or false")
    return TableConfig(
        name=name,
        primary_key=primary_key,
        cursor=cursor,
        initial_value=item.get("initial_value"),
        filter=row_filter.strip() if row_filter else None,
        exclude_columns=excluded,
        partitions=partitions,
        partition_column=partition_column or (primary_key[0] if partitions > 1 else None),
        cursor_tiebreak=tiebreak and len(primary_key) == 1,
    )
