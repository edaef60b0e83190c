"""What every warehouse plug-in provides: the one interface the flows talk to.

Why: the dlt destination, the dbt target, the Soda data source, the contracts' spelling
and the SQL that differs per warehouse must all follow from one setting, ``ELT_WAREHOUSE``.
Each warehouse answers these questions in its own module (``duckdb.py``, ``snowflake.py``,
``bigquery.py``); no other module asks which warehouse it is talking to.

Members take the resolved ``Settings`` (where the credentials and the DuckDB path live)
rather than holding state: one plug-in object serves every environment.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from flows.config import Settings
    from flows.errors import ConfigError

# dlt's load file format unless a warehouse says otherwise: fast to write and to load.
LOADER_FILE_FORMAT = "parquet"

ColumnType = tuple[str | None, int | None, int | None]  # data type, numeric precision, scale


class PublishStrategy(StrEnum):
    """How ``transform/macros/publish_marts.sql`` makes the audited marts visible to consumers."""

    # one transaction replaces every published table: readers see all old or all new
    TRANSACTION = "transaction"
    # a zero-copy clone of the audit schema swapped in by one atomic statement
    SCHEMA_SWAP = "schema swap"
    # each table replaced by its own atomic copy: for a few seconds some marts are new, some old
    TABLE_COPY = "per-table copy"


@dataclass(frozen=True)
class ContractDialect:
    """How a warehouse reads back what a contract declares.

    Contracts are written once, naming types as DuckDB does; Soda compares them with what
    the warehouse reports, so each warehouse says how its answers differ.
    """

    # the contract's type (lower case) → the warehouse's, where Soda's own synonyms fall short
    data_types: Mapping[str, str] = field(default_factory=dict)
    # the warehouse stores unquoted names in upper case and Soda quotes names as written
    upper_case_names: bool = False
    # column properties the warehouse's Soda dialect cannot read back; dropped before Soda runs
    unchecked_column_keys: tuple[str, ...] = ()


class Warehouse(ABC):
    """One warehouse: how each tool reaches it and the SQL that differs on it."""

    # the value of ELT_WAREHOUSE, the dbt target, the Soda data source file's stem
    name: ClassVar[str]
    # dlt's load file format for the raw tables
    loader_file_format: ClassVar[str] = LOADER_FILE_FORMAT
    # how contracts are rendered before Soda reads them (flows/contract_target.py)
    dialect: ClassVar[ContractDialect] = ContractDialect()
    # asset-aware runs and the README: what consumers may see while marts are published
    publish_strategy: ClassVar[PublishStrategy]
    # deployments: False limits the work pool to one run at a time (flows/deploy.py)
    takes_concurrent_writers: ClassVar[bool] = True
    # smoke-cloud runs the demo on each cloud warehouse whose credentials are set
    in_the_cloud: ClassVar[bool] = True
    # the SQL names of a float and a text type (profiles cast to them, flows/profiles.py)
    float_type: ClassVar[str] = "double"
    text_type: ClassVar[str] = "varchar"

    def __repr__(self) -> str:
        return f"<warehouse {self.name}>"

    def resolve_credentials(self) -> Any:
        """Credentials through dlt's config providers (environment, ``.dlt/secrets.toml``,
        Prefect Secret blocks), checked now so a wrong one fails before any tool starts."""
        return None

    @abstractmethod
    def dlt_destination(self, settings: Settings) -> Any:
        """The dlt destination every pipeline of a run loads into."""

    @abstractmethod
    def tool_environment(self, settings: Settings) -> dict[str, str]:
        """What ``transform/profiles.yml`` and this warehouse's Soda data source read from the
        environment: the one set of credentials, handed on, never copied into a file."""

    def catalog(self, settings: Settings) -> str | None:
        """What goes in front of schema names in a contract: Snowflake database, BigQuery project."""
        return None

    def soda_datasource(self, settings: Settings) -> str:
        """The stem of the Soda data source file in ``checks/datasources/`` for these credentials."""
        return self.name

    def login_error(self, settings: Settings, exc: BaseException) -> ConfigError | None:
        """A refused login or unreachable endpoint in ``exc``'s cause chain, as a ConfigError
        naming the setting to fix (never its value); None for any other failure.

        Why: dlt wraps the connector's error several levels deep in words that do not say
        which setting is wrong, and a settings error is never worth a retry.
        """
        return None

    def column_types(self, settings: Settings, schema: str, table: str) -> dict[str, ColumnType]:
        """Column types of a built table, for ``elt contracts scaffold``; empty when unknown."""
        return {}

    def append_rows(
        self,
        settings: Settings,
        schema: str,
        tables: Mapping[str, Sequence[Mapping[str, Any]]],
        replaced: Set[str],
    ) -> bool:
        """Add a few rows to tables dlt created, without a dlt load, in one transaction (the
        ``replaced`` tables emptied first); False when nothing was written: a table or column
        is missing, the warehouse is busy, or this warehouse has no cheaper way than dlt's.
        The audit trail's small writes (flows/audit.py) come here first."""
        return False

    def sample_sql(self, table: str, rows: int, total: int) -> str:
        """Profiles: a subquery reading about ``rows`` random rows of ``table`` (``total`` rows)."""
        return f"(select * from {table} sample ({rows} rows))"

    def information_schema(self, settings: Settings, schema: str) -> str:
        """Where the standard ``information_schema`` views describing ``schema`` are (data diffs)."""
        return "information_schema"

    @abstractmethod
    def drop_schema_sql(self, settings: Settings, schema: str) -> str:
        """CI cleanup: the statement that drops a schema and everything in it, quoted as this
        warehouse needs."""

    @abstractmethod
    def lineage_namespace(self, settings: Settings) -> str:
        """Lineage: the OpenLineage dataset namespace (the data source) the tables live in."""

    # -- privacy: finding a person's rows (flows/privacy/) ---------------------------------
    def schemas_sql(self, settings: Settings) -> str:
        """A query listing every schema (dataset) of the warehouse, every environment's."""
        return "select schema_name from information_schema.schemata"

    def quoted_table(self, settings: Settings, schema: str, table: str) -> str:
        """A table's name as this warehouse's SQL needs it (dataset prefix already in ``schema``)."""
        return f"{double_quoted(schema)}.{double_quoted(table)}"

    def quoted_column(self, column: str) -> str:
        return double_quoted(column)

    def text_sql(self, column: str, data_type: str) -> str:
        """A column's value as text; a JSON column as its JSON text."""
        return f"cast({column} as {self.text_type})"

    def json_field_sql(self, column: str, field: str) -> str:
        """The text of a JSON column's top-level ``field``."""
        return f"json_extract_string({column}, '$.{field}')"

    def contains_sql(self, text: str) -> str:
        """Whether ``text`` contains the statement's next parameter (no LIKE: ``_`` in an email)."""
        return f"contains({text}, %s)"

    def retention_sql(self, settings: Settings, tables: Sequence[tuple[str, str]]) -> list[str]:
        """After an erasure: statements that shorten how long the warehouse keeps the erased
        rows' old versions (time travel) for these (schema, table)s; none where it keeps none."""
        return []

    def compact(self, settings: Settings) -> None:
        """After an erasure: make sure deleted rows survive nowhere the warehouse can read back
        (DuckDB rewrites its file); the clouds keep time travel, documented in the README."""
        return None

    def grant_select_sql(self, settings: Settings, schema: str, grantee: str) -> tuple[str, ...] | None:
        """Privacy: statements letting ``grantee`` read every table of ``schema``; None when the
        warehouse has no roles to grant to."""
        return None

    def mask_column_sql(
        self, settings: Settings, schema: str, table: str, column: str, policy: str
    ) -> str | None:
        """Privacy: the statement applying masking ``policy`` to a column; None when the
        warehouse masks no columns in SQL."""
        return None


def double_quoted(identifier: str) -> str:
    """An identifier in standard SQL quotes (DuckDB, Snowflake): ``"name"``, inner quotes doubled."""
    return '"' + identifier.replace('"', '""') + '"'
