"""Shared pieces of the CDC tests: a database with a replication role, a test source, a
random workload, and a row-by-row comparison of a PostgreSQL table with its warehouse copy."""

from __future__ import annotations

import os
import random
import string
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import dlt
import duckdb
import psycopg2

from dlt_sources.postgres_cdc import CdcReport, after_load, replication_resource, resolve_settings
from dlt_sources.postgres_cdc.catalog import describe_tables, setup_publication
from standins.postgres import PostgresServer
from tests.support.postgres import execute_as_admin, fresh_database
from tests.support.row_hashes import row_hash

SOURCE = "cdc_test"
ROLE = "elt_cdc_test"

# The tables most CDC tests replicate, and the columns compared row by row.
ITEMS_SQL = """
create table items (
    id bigint primary key,
    name text,
    qty integer,
    price numeric(12, 2),
    payload jsonb,
    flag boolean,
    seen_at timestamptz,
    big text
);
create table notes (
    a integer,
    b text,
    body text,
    big text,
    primary key (a, b)
);
"""
ITEM_COLUMNS = ["id", "name", "qty", "price", "payload", "flag", "seen_at", "big"]
NOTE_COLUMNS = ["a", "b", "body", "big"]


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
    """A fresh database with the tables, a LOGIN REPLICATION role (created once per server)
    and the admin's publication."""
    fresh_database(server, name)
    execute_as_admin(
        server,
        f"do $$ begin if not exists (select from pg_roles where rolname = '{ROLE}')"
        f" then create role {ROLE} login replication; end if; end $$",
    )
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


def run_cdc(pipeline: dlt.Pipeline, tables: list[str] | None = None) -> CdcReport:
    """One CDC run and its post-load step, as the ingest flow does it."""
    pipeline.run(
        cdc_test_source(tables or ["items", "notes"]), loader_file_format="parquet"
    ).raise_on_failed_jobs()
    return after_load(pipeline, SOURCE)


def incompressible(rng: random.Random, size: int) -> str:
    """Random letters: pglz can't shrink them below the TOAST threshold, so they go out of line."""
    return "".join(rng.choices(string.ascii_letters + string.digits, k=size))


class RandomWorkload:
    """Random transactions over ``items`` and ``notes``; keeps track of the keys that exist."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.items: set[int] = set()
        self.notes: set[tuple[int, str]] = set()
        self.next_id = 1

    def item_values(self) -> tuple:
        rng = self.rng
        big = rng.choice([None, "short", incompressible(rng, rng.randint(2_500, 6_000))])
        return (
            f"name-{rng.randint(0, 10**6)}",
            rng.randint(-5, 500),
            f"{rng.randint(0, 10**7) / 100:.2f}",
            f'{{"k": {rng.randint(0, 9)}, "tags": ["a", "b"]}}',
            rng.random() < 0.5,
            f"2026-0{rng.randint(1, 9)}-1{rng.randint(0, 9)} 12:34:56.{rng.randint(0, 999_999):06d}+00",
            big,
        )

    def insert_item(self) -> tuple[str, tuple]:
        item_id, self.next_id = self.next_id, self.next_id + 1
        self.items.add(item_id)
        return "insert into items values (%s, %s, %s, %s, %s, %s, %s, %s)", (item_id, *self.item_values())

    def statements(self) -> list[tuple[str, tuple]]:
        """One transaction: 1-6 random operations."""
        rng = self.rng
        out: list[tuple[str, tuple]] = []
        for _ in range(rng.randint(1, 6)):
            roll = rng.random()
            if roll < 0.25 or not self.items:
                out.append(self.insert_item())
            elif roll < 0.55:  # update other columns only: the big value must survive
                item_id = rng.choice(sorted(self.items))
                for _ in range(rng.randint(1, 3)):  # several updates of the same row
                    out.append(
                        (
                            "update items set qty = qty + 1, name = %s where id = %s",
                            (f"renamed-{rng.randint(0, 999)}", item_id),
                        )
                    )
            elif roll < 0.65:
                item_id = rng.choice(sorted(self.items))
                out.append(
                    (
                        "update items set big = %s, flag = not flag where id = %s",
                        (incompressible(rng, 3_000), item_id),
                    )
                )
            elif roll < 0.75:
                item_id = rng.choice(sorted(self.items))
                self.items.discard(item_id)
                out.append(("delete from items where id = %s", (item_id,)))
            elif roll < 0.8:  # delete and re-insert the same key in one transaction
                item_id = rng.choice(sorted(self.items))
                out.append(("delete from items where id = %s", (item_id,)))
                out.append(
                    (
                        "insert into items values (%s, %s, %s, %s, %s, %s, %s, %s)",
                        (item_id, *self.item_values()),
                    )
                )
            elif roll < 0.85:  # the primary key itself changes
                old_id = rng.choice(sorted(self.items))
                new_id, self.next_id = self.next_id, self.next_id + 1
                self.items.discard(old_id)
                self.items.add(new_id)
                out.append(("update items set id = %s where id = %s", (new_id, old_id)))
            elif roll < 0.93 or not self.notes:
                key = (rng.randint(1, 50), rng.choice("xyz"))
                self.notes.add(key)
                out.append(
                    (
                        "insert into notes values (%s, %s, %s, %s) on conflict (a, b) do update "
                        "set body = excluded.body",
                        (*key, f"body {rng.random()}", incompressible(rng, 4_000)),
                    )
                )
            else:
                key = rng.choice(sorted(self.notes))
                self.notes.discard(key)
                out.append(("delete from notes where a = %s and b = %s", key))
        return out


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
