"""What PostgreSQL knows about the replicated tables, the publication and the slot.

Why up front: a table without a primary key or replica identity, a missing
publication or a lost slot are problems a person must fix; finding them before
any data moves gives one clear message instead of a failure halfway through a run.
Also the admin side used by ``elt cdc`` and the demo: publication set-up and
slot inspection / removal. Never imports Prefect.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg2
from psycopg2 import sql
from psycopg2.extensions import connection as Connection

from dlt_sources.errors import SourceError, connection_error
from dlt_sources.postgres_cdc.arrow_types import SESSION_OPTIONS
from dlt_sources.postgres_cdc.pgoutput import Column, parse_lsn


class SlotLost(SourceError):
    """The slot can no longer deliver the changes the warehouse needs; only a re-snapshot recovers.

    Not transient: retrying cannot bring back WAL the server has removed.
    """


@dataclass(frozen=True)
class TableInfo:
    schema: str
    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    def identifier(self) -> sql.Composed:
        return sql.SQL(".").join([sql.Identifier(self.schema), sql.Identifier(self.name)])


@dataclass(frozen=True)
class SlotInfo:
    name: str
    wal_status: str | None  # reserved / extended / unreserved / lost
    active: bool
    confirmed_flush_lsn: int | None
    retained_bytes: int  # WAL the server keeps for this slot (current LSN - restart LSN)
    unconfirmed_bytes: int  # WAL written since the last acknowledged commit

    @property
    def lost(self) -> bool:
        return self.wal_status == "lost" or self.confirmed_flush_lsn is None


def safe_dsn(dsn: str) -> str:
    """The DSN without its password, for messages."""
    try:
        params = psycopg2.extensions.parse_dsn(dsn)
    except psycopg2.ProgrammingError:
        return "<unparseable connection string>"
    user = f"{params['user']}@" if params.get("user") else ""
    port = f":{params['port']}" if params.get("port") else ""
    return f"postgresql://{user}{params.get('host', '')}{port}/{params.get('dbname', '')}"


def connect(dsn: str, source: str) -> Connection:
    """A connection with fixed text-output settings; unreachable servers fail naming the setting."""
    try:
        conn = psycopg2.connect(dsn, options=SESSION_OPTIONS, connect_timeout=10)
    except psycopg2.OperationalError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise connection_error(
            f"source {source}: cannot connect to {safe_dsn(dsn)} (setting sources.{source}.credentials)",
            reason,
        ) from None
    # Catalog reads must not hold a transaction open: slot creation waits for open ones.
    conn.autocommit = True
    return conn


@contextmanager
def connection(dsn: str, source: str) -> Iterator[Connection]:
    conn = connect(dsn, source)
    try:
        yield conn
    finally:
        conn.close()


_TABLES_SQL = """
select c.oid, c.relname, c.relreplident,
       array(select a.attname::text
             from pg_index i
             join pg_attribute a on a.attrelid = i.indrelid and a.attnum = any(i.indkey)
             where i.indrelid = c.oid and i.indisprimary
             order by array_position(i.indkey::int2[], a.attnum)) as primary_key
from pg_class c join pg_namespace n on n.oid = c.relnamespace
where n.nspname = %s and c.relname = any(%s) and c.relkind in ('r', 'p')
"""
_COLUMNS_SQL = """
select attname, atttypid, atttypmod from pg_attribute
where attrelid = %s and attnum > 0 and not attisdropped order by attnum
"""


def describe_tables(conn: Connection, source: str, schema: str, names: Sequence[str]) -> list[TableInfo]:
    """Columns and keys of the tables, refusing any whose changes can't be replicated and merged."""
    with conn.cursor() as cur:
        cur.execute(_TABLES_SQL, (schema, list(names)))
        found = {row[1]: row for row in cur.fetchall()}
        missing = [name for name in names if name not in found]
        if missing:
            raise SourceError(f"source {source}: table(s) {', '.join(missing)} not found in schema {schema}")
        tables = []
        for name in names:
            oid, _, identity, primary_key = found[name]
            qualified = f"{schema}.{name}"
            if identity == "n":
                raise SourceError(
                    f"source {source}: table {qualified} has REPLICA IDENTITY NOTHING, so PostgreSQL "
                    f"cannot publish its updates and deletes; run `ALTER TABLE {qualified} "
                    "REPLICA IDENTITY DEFAULT` (or FULL)"
                )
            if not primary_key:
                raise SourceError(
                    f"source {source}: table {qualified} has no primary key, so its updates and "
                    "deletes carry no replica identity and can't be merged in the warehouse; add one "
                    f"(`ALTER TABLE {qualified} ADD PRIMARY KEY (…)`); REPLICA IDENTITY FULL alone "
                    "lets PostgreSQL publish the changes but leaves nothing to merge on"
                )
            cur.execute(_COLUMNS_SQL, (oid,))
            columns = tuple(
                Column(column, type_oid, modifier, column in primary_key)
                for column, type_oid, modifier in cur.fetchall()
            )
            tables.append(TableInfo(schema, name, columns, tuple(primary_key)))
    return tables


def check_publication(conn: Connection, source: str, publication: str, tables: Sequence[TableInfo]) -> None:
    """The publication must exist and include every table (it is created by an admin: ``elt cdc setup``)."""
    with conn.cursor() as cur:
        cur.execute(
            "select pubinsert and pubupdate and pubdelete from pg_publication where pubname = %s",
            (publication,),
        )
        row = cur.fetchone()
        if row is None:
            raise SourceError(
                f"source {source}: publication {publication} does not exist; an admin creates it with "
                f"`elt cdc setup {source} --admin-dsn …`"
            )
        if not row[0]:
            raise SourceError(
                f"source {source}: publication {publication} must publish inserts, updates and deletes"
            )
        cur.execute(
            "select schemaname, tablename from pg_publication_tables where pubname = %s", (publication,)
        )
        published = {f"{schema}.{name}" for schema, name in cur.fetchall()}
    missing = [table.qualified for table in tables if table.qualified not in published]
    if missing:
        raise SourceError(
            f"source {source}: publication {publication} lacks {', '.join(missing)}; "
            f"run `elt cdc setup {source} --admin-dsn …`"
        )


_SLOT_SQL = """
select wal_status, active, confirmed_flush_lsn::text,
       coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn), 0)::bigint,
       coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn), 0)::bigint
from pg_replication_slots where slot_name = %s
"""


def slot_info(conn: Connection, slot: str) -> SlotInfo | None:
    with conn.cursor() as cur:
        cur.execute(_SLOT_SQL, (slot,))
        row = cur.fetchone()
    if row is None:
        return None
    status, active, confirmed, retained, unconfirmed = row
    return SlotInfo(slot, status, active, parse_lsn(confirmed) if confirmed else None, retained, unconfirmed)


def wait_until_idle(conn: Connection, slot: str, timeout_s: float = 15.0) -> SlotInfo | None:
    """The slot's info once no session streams from it (or after ``timeout_s``).

    Why wait: a consumer that died (a killed worker) keeps the slot active until the
    server notices its connection is gone, which takes a moment.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        info = slot_info(conn, slot)
        if info is None or not info.active or time.monotonic() > deadline:
            return info
        time.sleep(0.2)


def current_wal_lsn(conn: Connection) -> int:
    """Where WAL ends now. The insert position, not the written one: with asynchronous
    commit a transaction can be committed (and visible) before its WAL is written."""
    with conn.cursor() as cur:
        cur.execute("select pg_current_wal_insert_lsn()::text")
        return parse_lsn(cur.fetchone()[0])


def drop_slot(conn: Connection, source: str, slot: str) -> bool:
    """Drop the slot if it exists; True if it did. An active slot (a run in progress) is refused."""
    info = wait_until_idle(conn, slot)
    if info is None:
        return False
    if info.active:
        raise SourceError(f"source {source}: slot {slot} is in use by a running replication; try again later")
    with conn.cursor() as cur:
        cur.execute("select pg_drop_replication_slot(%s)", (slot,))
    conn.commit()
    return True


def setup_publication(admin: Connection, publication: str, tables: Sequence[TableInfo], role: str) -> None:
    """Create (or extend) the publication and let the replication role read the tables.

    Run by an admin who owns the tables: creating a publication needs ownership, which
    the replication role deliberately lacks.
    """
    names = [table.identifier() for table in tables]
    with admin.cursor() as cur:
        cur.execute("select 1 from pg_publication where pubname = %s", (publication,))
        if cur.fetchone() is None:
            cur.execute(
                sql.SQL("create publication {} for table {}").format(
                    sql.Identifier(publication), sql.SQL(", ").join(names)
                )
            )
        else:
            cur.execute(
                "select schemaname, tablename from pg_publication_tables where pubname = %s", (publication,)
            )
            published = {f"{schema}.{name}" for schema, name in cur.fetchall()}
            for table in tables:
                if table.qualified not in published:
                    cur.execute(
                        sql.SQL("alter publication {} add table {}").format(
                            sql.Identifier(publication), table.identifier()
                        )
                    )
        for schema in sorted({table.schema for table in tables}):
            cur.execute(
                sql.SQL("grant usage on schema {} to {}").format(sql.Identifier(schema), sql.Identifier(role))
            )
        cur.execute(
            sql.SQL("grant select on {} to {}").format(sql.SQL(", ").join(names), sql.Identifier(role))
        )
    admin.commit()


def drop_publication(admin: Connection, publication: str) -> None:
    with admin.cursor() as cur:
        cur.execute(sql.SQL("drop publication if exists {}").format(sql.Identifier(publication)))
    admin.commit()


def publication_tables(conn: Connection, publication: str) -> list[str] | None:
    """The tables a publication includes, or None if it does not exist."""
    with conn.cursor() as cur:
        cur.execute("select 1 from pg_publication where pubname = %s", (publication,))
        if cur.fetchone() is None:
            return None
        cur.execute(
            "select schemaname || '.' || tablename from pg_publication_tables where pubname = %s order by 1",
            (publication,),
        )
        return [row[0] for row in cur.fetchall()]
