"""PostgreSQL for the tests: one server for the whole session, databases per test module.

Why: initialising and starting a server costs seconds, and every module used to start its
own. Modules now share one cluster and keep apart by database: a module's databases are
named after it and dropped, with their replication slots, when the module ends. What is
cluster-wide stays each module's care: name replication slots after the database (as
``tests/support/cdc.py`` does) and create roles only if missing. A test that restarts,
stops or reconfigures the server (``ALTER SYSTEM``) starts its own with
``standins.postgres.running_postgres``.

A pytest plugin (registered in ``tests/conftest.py``): ``postgres_server``,
``postgres_databases``, ``postgres_database``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import pytest
from psycopg2 import sql

from standins.postgres import SUPERUSER, PostgresServer, running_postgres

# Every module's slots at once, with room to spare (each CDC test holds one).
MAX_REPLICATION_SLOTS = 40
# PostgreSQL names end at 63 bytes; this leaves room for the ``slot_`` / ``pub_`` in front.
MAX_NAME_LENGTH = 40
# Between a module's name and a database's label: module ``cdc`` never owns ``cdc_crash__x``.
SEPARATOR = "__"


def execute_as_admin(server: PostgresServer, *statements: str | sql.Composable) -> None:
    """Run statements one by one as the superuser, outside a transaction (``create database``)."""
    conn = psycopg2.connect(server.dsn())
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
    finally:
        conn.close()


def drop_database(server: PostgresServer, name: str) -> None:
    """Drop a database and its replication slots (PostgreSQL refuses to drop one that has
    slots), ending any session that still reads a slot or uses the database."""
    conn = psycopg2.connect(server.dsn())
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(
                "select pg_terminate_backend(active_pid, 10000) from pg_replication_slots"
                " where database = %s and active_pid is not null",
                (name,),
            )
            cur.execute(
                "select pg_drop_replication_slot(slot_name) from pg_replication_slots where database = %s",
                (name,),
            )
            cur.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
    finally:
        conn.close()


def fresh_database(server: PostgresServer, name: str) -> str:
    """An empty database ``name`` (an older one of that name is dropped first); its name."""
    drop_database(server, name)
    execute_as_admin(server, sql.SQL("create database {}").format(sql.Identifier(name)))
    return name


@dataclass(frozen=True)
class Database:
    """One database on a server."""

    server: PostgresServer
    name: str

    def dsn(self, user: str = SUPERUSER) -> str:
        return self.server.dsn(self.name, user=user)


@dataclass(frozen=True)
class ModuleDatabases:
    """The databases of one test module on the session's server, all named after it."""

    server: PostgresServer
    module: str

    def name(self, label: str = "") -> str:
        """``<module>__<label>`` in lower case, shortened with a hash when too long."""
        name = re.sub(r"[^a-z0-9_]", "_", SEPARATOR.join(filter(None, [self.module, label])).lower())
        if len(name) <= MAX_NAME_LENGTH:
            return name
        digest = hashlib.sha1(name.encode()).hexdigest()[:8]
        return f"{name[: MAX_NAME_LENGTH - len(digest) - 1]}_{digest}"

    def create(self, label: str = "") -> Database:
        """A fresh database of this module."""
        return Database(self.server, fresh_database(self.server, self.name(label)))

    def owns(self, name: str) -> bool:
        return name == self.module or name.startswith(self.module + SEPARATOR)

    def drop_all(self) -> None:
        """Drop every database of this module, with its replication slots."""
        conn = psycopg2.connect(self.server.dsn())
        try:
            with conn.cursor() as cur:
                cur.execute("select datname from pg_database")
                names = [name for (name,) in cur.fetchall()]
        finally:
            conn.close()
        for name in filter(self.owns, names):
            drop_database(self.server, name)


def require_password(postgres: PostgresServer, role: str, password: str) -> None:
    """Give ``role`` its ``password`` and make the server ask for it on TCP logins.

    Why: the test servers trust every local login, but a least-privilege role's password is
    a secret the tests must be able to search for, and a wrong one must really be refused.
    """
    admin = psycopg2.connect(postgres.dsn())
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(sql.SQL("alter role {} password %s").format(sql.Identifier(role)), (password,))
        hba = postgres.pgdata / "pg_hba.conf"
        hba.write_text(f"host all {role} 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
        cur.execute("select pg_reload_conf()")
    admin.close()


def password_dsn(postgres: PostgresServer, database: str, role: str, password: str) -> str:
    return f"postgresql://{role}:{password}@{postgres.host}:{postgres.port}/{database}"


@pytest.fixture(scope="session")
def postgres_server(session_dir: Path) -> Iterator[PostgresServer]:
    """The session's PostgreSQL (127.0.0.1, free port, ``wal_level=logical``): started by the
    first test that needs it, stopped when the session ends."""
    with running_postgres(
        session_dir / "postgres", durable=False, max_replication_slots=MAX_REPLICATION_SLOTS
    ) as server:
        yield server


@pytest.fixture(scope="module")
def postgres_databases(
    postgres_server: PostgresServer, request: pytest.FixtureRequest
) -> Iterator[ModuleDatabases]:
    """This module's databases on the session's server, dropped when the module ends."""
    module = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    databases = ModuleDatabases(postgres_server, module)
    yield databases
    databases.drop_all()


@pytest.fixture(scope="module")
def postgres_database(postgres_databases: ModuleDatabases) -> Database:
    """A fresh database of the module's own on the session's server."""
    return postgres_databases.create()
