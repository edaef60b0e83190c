"""Connections and Arrow streams: ADBC for PostgreSQL, connectorx for MySQL/MariaDB.

Why these drivers: they decode rows in C/Rust straight into Arrow record batches
(design.md measured ADBC's ``fetch_record_batch()`` stream at ~550k rows/s into DuckDB,
dlt's SQLAlchemy/pyarrow backend at ~43k). SQLAlchemy is still used for what it does
well and cheaply: reflecting the tables, counting, finding ranges. Streams of several
partitions are read on their own connections in background threads (the drivers
release the GIL while they read) while the caller hands earlier batches to dlt.
Encryption in transit is set in the one URL: libpq reads ``sslmode``/``sslrootcert`` for
psycopg2 and ADBC alike; PyMySQL's ``ssl_ca`` is translated for connectorx.
"""

from __future__ import annotations

import re
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
# The URL option naming the CA file that must have signed the server's certificate: libpq's
# for PostgreSQL (with sslmode=verify-full), SQLAlchemy's PyMySQL dialect's for MySQL/MariaDB.
CA_PARAMETERS = {POSTGRES: "sslrootcert"} | dict.fromkeys(MYSQL_DIALECTS, "ssl_ca")
# PyMySQL's TLS options that connectorx can also honour (connectorx_uri)
CONNECTORX_TLS = ("ssl_ca", "ssl_check_hostname")
_SECRET_OPTION = re.compile(r"password|secret|token", re.IGNORECASE)


@dataclass(frozen=True)
class Database:
    """One database of a source: a checked SQLAlchemy engine and the fast reader for it."""

    source: str
    setting: str
    url: sa.URL
    engine: sa.Engine
    backend: str
    reader_uri: str  # the fast driver's URL, password included ("" for dlt's sql_table)

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

            with adbc.connect(self.reader_uri) as conn, conn.cursor() as cursor:
                cursor.execute(sql)
                yield from cursor.fetch_record_batch()
        else:
            import connectorx

            yield from connectorx.read_sql(
                self.reader_uri, sql, return_type="arrow_stream", batch_size=CONNECTORX_BATCH_ROWS
            )


def backend_for(dialect: str, configured: str) -> str:
    """The reader for a dialect: the fast driver where one exists, else SQLAlchemy (dlt)."""
    fast = "adbc" if dialect == POSTGRES else "connectorx" if dialect in MYSQL_DIALECTS else None
    if configured == "auto":
        return fast or "sqlalchemy"
    if configured != "sqlalchemy" and configured != fast:
        raise SourceError(f"backend {configured!r} cannot read a {dialect} database (use auto or sqlalchemy)")
    return configured


def connectorx_uri(url: sa.URL, source: str, setting: str) -> str:
    """The URL for connectorx, verifying the server as strictly as PyMySQL does for SQLAlchemy.

    Why a translation: the one URL a person writes uses SQLAlchemy's options (``ssl_ca``,
    ``ssl_check_hostname``), which connectorx rejects; it spells them ``ssl-ca`` and
    ``ssl-mode``. With ``ssl_ca`` the certificate must be signed by that CA and hold the
    URL's host (``VERIFY_IDENTITY``, PostgreSQL's verify-full), or only be signed by it
    with ``ssl_check_hostname=false`` (``VERIFY_CA``). Client certificates have no
    connectorx option: they are refused here rather than dropped.
    """
    query = dict(url.query)
    unsupported = sorted(key for key in query if key.startswith("ssl_") and key not in CONNECTORX_TLS)
    if unsupported:
        raise SourceError(
            f"source {source}: connectorx cannot use {', '.join(unsupported)} of `{setting}` (only "
            f"{' and '.join(CONNECTORX_TLS)}); set `backend: sqlalchemy` in the source's file"
        )
    check_host = sa.util.asbool(query.pop("ssl_check_hostname", True))
    if "ssl_ca" in query:
        query["ssl-ca"] = query.pop("ssl_ca")
        query["ssl-mode"] = "VERIFY_IDENTITY" if check_host else "VERIFY_CA"
    return url.set(drivername="mysql", query=query).render_as_string(hide_password=False)


def _reader_uri(url: sa.URL, backend: str, source: str, setting: str) -> str:
    """The fast driver's URL; ADBC hands it to libpq as it is (``sslmode``, ``sslrootcert`` …)."""
    if backend == "adbc":
        return url.set(drivername=POSTGRES).render_as_string(hide_password=False)
    if backend == "connectorx":
        return connectorx_uri(url, source, setting)
    return ""  # dlt's sql_table reads through the engine


def shown_url(url: sa.URL) -> str:
    """The URL for messages: no password, and none of the options that hold a secret (libpq's
    ``sslpassword``, a ``password`` given as an option); the others (``sslmode``,
    ``sslrootcert``, ``ssl_ca``) stay, since they are what a person checks."""
    secret = [key for key in url.query if _SECRET_OPTION.search(key)]
    return url.difference_update_query(secret).render_as_string(hide_password=True)


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
    backend = backend_for(engine.dialect.name, configured_backend)
    reader_uri = _reader_uri(url, backend, source, setting)
    try:
        with engine.connect():
            pass
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        engine.dispose()
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        raise connection_error(
            f"source {source}: cannot connect to {shown_url(url)} (setting {setting})",
            reason,
            CA_PARAMETERS.get(url.get_backend_name(), "sslrootcert"),
        ) from None
    return Database(source, setting, url, engine, backend, reader_uri)
