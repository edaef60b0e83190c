"""Shared pieces of the CDC tests (no tests here): a database with a replication role, a test
source, and a row-by-row comparison of a PostgreSQL table with its warehouse copy."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import dlt
import duckdb
import psycopg2

from dlt_sources.postgres_cdc import replication_resource, resolve_settings
from dlt_sources.postgres_cdc.catalog import describe_tables, setup_publication
from standins.postgres import PostgresServer
from tests.row_hashes import row_hash

SOURCE = "cdc_test"
ROLE = "elt_cdc_test"


@dataclass(frozen=True)
class CdcDatabase:
    server: PostgresServer
    name: str

    @property
    def admin_dsn(self) -> str:
        return self.server.dsn(self.name)

    @property
    def replication_dsn(self) -> str:
        return self.server.dsn(self.name, user=ROLE)

    def execute(self, *statements: str | tuple[str, Sequence[Any]]) -> None:
        """Run statements in one transaction as the admin."""
        conn = psycopg2.connect(self.admin_dsn)
        try:
            with conn, conn.cursor() as cur:
                for statement in statements:
                    if isinstance(statement, tuple):
                        cur.execute(*statement)
                    else:
                        cur.execute(statement)
        finally:
            conn.close()

    def environment(self, **settings: str) -> dict[str, str]:
        """Settings of the test source: a slot and publication named after the database."""
        values = {
            "CREDENTIALS": self.replication_dsn,
            "SLOT_NAME": f"slot_{self.name}",
            "PUBLICATION": f"pub_{self.name}",
        } | settings
        return {f"SOURCES__{SOURCE.upper()}__{key}": value for key, value in values.items()}


def create_database(server: PostgresServer, name: str, schema_sql: str, tables: Sequence[str]) -> CdcDatabase:
    """A fresh database with the tables, a LOGIN REPLICATION role and the admin's publication."""
    conn = psycopg2.connect(server.dsn())
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"drop database if exists {name} with (force)")
        cur.execute(f"create database {name}")
        cur.execute("select 1 from pg_roles where rolname = %s", (ROLE,))
        if cur.fetchone() is None:
            cur.execute(f"create role {ROLE} login replication")
    conn.close()
    database = CdcDatabase(server, name)
    database.execute(schema_sql)
    admin = psycopg2.connect(database.admin_dsn)
    try:
        setup_publication(admin, f"pub_{name}", describe_tables(admin, SOURCE, "public", tables), ROLE)
    finally:
        admin.close()
    return database


@dlt.source(name=SOURCE, max_table_nesting=0)
def cdc_test_source(tables: list[str]) -> Iterator[Any]:
    yield replication_resource(SOURCE, tables, resolve_settings(SOURCE))


def row_hashes(rows: list[tuple]) -> list[str]:
    return sorted(map(row_hash, rows))


def source_rows(database: CdcDatabase, table: str, columns: Sequence[str]) -> list[tuple]:
    conn = psycopg2.connect(database.admin_dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(f"select {', '.join(columns)} from {table}")
            return cur.fetchall()
    finally:
        conn.close()


def warehouse_rows(
    db_path: os.PathLike, dataset: str, table: str, columns: Sequence[str], where: str = ""
) -> list[tuple]:
    with duckdb.connect(str(db_path), read_only=True) as con:
        return con.execute(f"select {', '.join(columns)} from {dataset}.{table} {where}").fetchall()


def assert_replicated(
    database: CdcDatabase, db_path: os.PathLike, dataset: str, table: str, columns: Sequence[str]
) -> None:
    """Every row of the source table, and no other, is in the warehouse (row-by-row hash)."""
    expected = row_hashes(source_rows(database, table, columns))
    actual = row_hashes(warehouse_rows(db_path, dataset, table, columns))
    assert len(actual) == len(expected), (
        f"{table}: {len(actual)} rows in the warehouse, {len(expected)} in source"
    )
    assert actual == expected, f"{table}: rows differ"
