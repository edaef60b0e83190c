"""Connections and Arrow streams: ADBC for PostgreSQL, connectorx for MySQL/MariaDB.

Why these drivers: they decode rows in C/Rust straight into Arrow record batches
(design.md measured ADBC's ``fetch_record_batch()`` stream at ~550k rows/s into DuckDB,
dlt's SQLAlchemy/pyarrow backend at ~43k). SQLAlchemy is still used for what it does
well and cheaply: reflecting the tables, counting, finding ranges. Streams of several
partitions are read on their own connections in background threads (the drivers
release the GIL while they read) while the caller hands earlier batches to dlt.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

# Imported with the module rather than on the first read: ADBC's DB-API module loads
# pyarrow.dataset (~0.3 s), which a lazy import charged to the first run's extract step.
import pyarrow as pa
import sqlalchemy as sa

from dlt_sources.errors import SourceError, connection_error

POSTGRES = "postgresql"
MYSQL_DIALECTS = frozenset({"mysql", "mariadb"})
CONNECT_TIMEOUT_S = 10
CONNECTORX_BATCH_ROWS = 50_000
PREFETCH_BATCHES = 4  # per stream, read ahead of the batch dlt is writing


@dataclass(frozen=True)
class Database:
    """One database of a source: a checked SQLAlchemy engine and the fast reader for it."""

    source: str
    setting: str
    url: sa.URL
    engine: sa.Engine
    backend: str

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def sql(self, query: sa.Select[Any]) -> str:
        """``query`` as this database's SQL text, values inlined (the fast drivers take text)."""
        return str(query.compile(dialect=self.engine.dialect, compile_kwargs={"literal_binds": True}))

    def scalar_row(self, query: sa.Select[Any]) -> sa.Row[Any]:
        with self.engine.connect() as conn:
            row = conn.execute(query).one()
        return row

    def stream(self, query: sa.Select[Any]) -> Iterator[pa.RecordBatch]:
        """Record batches of ``query`` from the fast driver (one connection, one snapshot)."""
        sql = self.sql(query)
        # The drivers are imported here: ADBC pulls in pandas (~1.2 s), which every process
        # importing the source registry would pay for a source it may never read.
        if self.backend == "adbc":
            import adbc_driver_postgresql.dbapi as adbc

            uri = self.url.set(drivername="postgresql").render_as_string(hide_password=False)
            with adbc.connect(uri) as conn, conn.cursor() as cursor:
                cursor.execute(sql)
                yield from cursor.fetch_record_batch()
        else:
            import connectorx

            uri = self.url.set(drivername="mysql").render_as_string(hide_password=False)
            yield from connectorx.read_sql(
                uri, sql, return_type="arrow_stream", batch_size=CONNECTORX_BATCH_ROWS
            )


def backend_for(dialect: str, configured: str) -> str:
    """The reader for a dialect: the fast driver where one exists, else SQLAlchemy (dlt)."""
    fast = "adbc" if dialect == POSTGRES else "connectorx" if dialect in MYSQL_DIALECTS else None
    if configured == "auto":
        return fast or "sqlalchemy"
    if configured != "sqlalchemy" and configured != fast:
        raise SourceError(f"backend {configured!r} cannot read a {dialect} database (use auto or sqlalchemy)")
    return configured


def _engine_url(url: sa.URL) -> sa.URL:
    """The SQLAlchemy driver we ship for a bare scheme (psycopg2, PyMySQL)."""
    if url.drivername == POSTGRES:
        return url.set(drivername="postgresql+psycopg2")
    if url.drivername in MYSQL_DIALECTS:
        return url.set(drivername=f"{url.drivername}+pymysql")
    return url


def connect(source: str, setting: str, credentials: str, configured_backend: str) -> Database:
    """An engine that has proven it can connect, so an unreachable database fails here in
    one line naming the setting (never the password), not deep inside extraction."""
    try:
        url = sa.make_url(credentials)
    except sa.exc.ArgumentError:
        raise SourceError(
            f"source {source}: `{setting}` is not a database URL (dialect://user:password@host:port/db)"
        ) from None
    engine_url = _engine_url(url)
    args: dict[str, Any] = (
        {"connect_timeout": CONNECT_TIMEOUT_S}
        if url.get_backend_name()
        in (
            POSTGRES,
            *MYSQL_DIALECTS,
        )
        else {}
    )
    try:
        engine = sa.create_engine(engine_url, pool_pre_ping=True, connect_args=args)
    except (sa.exc.NoSuchModuleError, ImportError) as exc:
        raise SourceError(f"source {source}: no driver for {url.drivername!r} ({setting}): {exc}") from None
    try:
        with engine.connect():
            pass
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        engine.dispose()
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        raise connection_error(
            f"source {source}: cannot connect to {url.render_as_string(hide_password=True)} "
            f"(setting {setting})",
            reason,
        ) from None
    backend = backend_for(engine.dialect.name, configured_backend)
    return Database(source, setting, url, engine, backend)
