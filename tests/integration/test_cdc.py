"""Postgres CDC against a real PostgreSQL (wal_level=logical) into a real DuckDB file.

GIVEN random interleavings of insert / update / delete transactions (large TOASTed
values, several updates of one row in a transaction, key changes, deletes and
re-inserts) WHEN the pipeline runs after each batch THEN every table in DuckDB equals
the PostgreSQL table row by row. Plus the edge cases the protocol has: unchanged TOASTed
values, ADD/DROP COLUMN, TRUNCATE, tables without a replica identity, soft deletes.
"""

from __future__ import annotations

import random
import shutil
import string
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_cdc_support import (
    SOURCE,
    CdcDatabase,
    assert_replicated,
    cdc_test_source,
    create_database,
    warehouse_rows,
)

from dlt_sources.errors import SourceError
from dlt_sources.postgres_cdc import CdcReport, after_load
from standins.postgres import PostgresServer, running_postgres

DATASET = "raw_cdc_test"

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


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    with running_postgres(tmp_path_factory.mktemp("cdc") / "pg", durable=False) as postgres:
        yield postgres


@pytest.fixture
def database(
    server: PostgresServer, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> CdcDatabase:
    name = request.node.name.removeprefix("test_")[:40].lower()
    created = create_database(server, name, ITEMS_SQL, ["items", "notes"])
    for key, value in created.environment().items():
        monkeypatch.setenv(key, value)
    return created


def run(pipeline, tables: list[str] | None = None) -> CdcReport:  # type: ignore[no-untyped-def]
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


def assert_all_replicated(database: CdcDatabase, db_path: Path) -> None:
    assert_replicated(database, db_path, DATASET, "items", ITEM_COLUMNS)
    assert_replicated(database, db_path, DATASET, "notes", NOTE_COLUMNS)


def test_random_change_batches_replicate_exactly(database, make_pipeline, db_path, tmp_path) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(20261128)
    workload = RandomWorkload(rng)
    database.execute(*[workload.insert_item() for _ in range(150)])
    pipeline = make_pipeline("cdc_random")
    # GIVEN the initial snapshot
    report = run(pipeline)
    assert any("snapshot" in note for note in report.notes)
    assert_all_replicated(database, db_path)
    for batch in range(4):
        # WHEN random transactions commit and the pipeline runs
        for _ in range(25):
            database.execute(*workload.statements())
        if batch == 2:  # a fresh worker: the position must come from the warehouse
            shutil.rmtree(tmp_path / "pipelines")
            pipeline = make_pipeline("cdc_random")
        run(pipeline)
        # THEN the warehouse equals the source, deletes included
        assert_all_replicated(database, db_path)
    # AND a run with nothing new loads nothing
    run(pipeline)
    counts = pipeline.last_trace.last_normalize_info.row_counts
    assert {table: n for table, n in counts.items() if not table.startswith("_dlt")} == {}


def test_unchanged_toast_value_survives_updates_in_later_runs(database, make_pipeline, db_path) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(1)
    big = incompressible(rng, 8_000)
    database.execute(("insert into items (id, name, big) values (1, 'a', %s), (2, 'b', %s)", (big, big)))
    pipeline = make_pipeline("cdc_toast")
    run(pipeline)
    # WHEN only small columns change, in this run and twice in one transaction in the next
    database.execute("update items set name = 'a2' where id = 1")
    run(pipeline)
    database.execute(
        "update items set name = 'a3' where id = 1",
        "update items set qty = 7 where id = 1",
        "update items set qty = 8 where id = 2",
    )
    run(pipeline)
    # THEN the big values are the originals, never NULL
    rows = warehouse_rows(db_path, DATASET, "items", ["id", "name", "qty", "big"], "order by id")
    assert rows == [(1, "a3", 7, big), (2, "b", 8, big)]
    assert_all_replicated(database, db_path)


def test_added_and_dropped_columns_follow_the_source(database, make_pipeline, db_path) -> None:  # type: ignore[no-untyped-def]
    database.execute("insert into items (id, name) values (1, 'a'), (2, 'b')")
    pipeline = make_pipeline("cdc_ddl")
    run(pipeline)
    # WHEN a column is added and filled, in the same run as earlier changes
    database.execute("update items set name = 'a2' where id = 1")
    database.execute(
        "alter table items add column color text",
        "update items set color = 'red' where id = 2",
        "insert into items (id, name, color) values (3, 'c', 'blue')",
    )
    run(pipeline)
    rows = warehouse_rows(db_path, DATASET, "items", ["id", "name", "color"], "order by id")
    assert rows == [(1, "a2", None), (2, "b", "red"), (3, "c", "blue")]
    # WHEN a column is dropped, rows written afterwards leave it empty
    database.execute("alter table items drop column color", "insert into items (id, name) values (4, 'd')")
    run(pipeline)
    rows = warehouse_rows(db_path, DATASET, "items", ["id", "color"], "order by id")
    assert rows == [(1, None), (2, "red"), (3, "blue"), (4, None)]


def test_truncate_removes_earlier_rows_and_warns(database, make_pipeline, db_path) -> None:  # type: ignore[no-untyped-def]
    database.execute("insert into items (id, name) values (1, 'a'), (2, 'b')")
    pipeline = make_pipeline("cdc_truncate")
    run(pipeline)
    # WHEN the table is truncated and refilled before the next run
    database.execute("insert into items (id, name) values (3, 'c')")
    database.execute("truncate items", "insert into items (id, name) values (2, 'b-again')")
    database.execute("insert into items (id, name) values (5, 'e')")
    report = run(pipeline)
    # THEN only rows written after the TRUNCATE remain, and the report warns
    assert warehouse_rows(db_path, DATASET, "items", ["id", "name"], "order by id") == [
        (2, "b-again"),
        (5, "e"),
    ]
    assert any("TRUNCATE of public.items" in warning for warning in report.warnings)
    assert_all_replicated(database, db_path)
    # AND the next run neither warns again nor loses rows
    assert run(pipeline).warnings == []
    assert_all_replicated(database, db_path)


def test_soft_deletes_keep_the_row_flagged(database, make_pipeline, db_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv(f"SOURCES__{SOURCE.upper()}__DELETE_MODE", "soft")
    big = incompressible(random.Random(2), 5_000)
    database.execute(("insert into items (id, name, big) values (1, 'a', %s), (2, 'b', 'small')", (big,)))
    pipeline = make_pipeline("cdc_soft")
    run(pipeline)
    database.execute("delete from items where id = 1", "insert into items (id, name) values (3, 'c')")
    database.execute("update items set name = 'c2' where id = 3", "delete from items where id = 3")
    run(pipeline)
    rows = warehouse_rows(db_path, DATASET, "items", ["id", "name", "big", "_cdc_deleted"], "order by id")
    assert rows == [(1, "a", big, True), (2, "b", "small", False), (3, "c2", None, True)]


def test_tables_without_replica_identity_are_refused(database, make_pipeline, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    pipeline = make_pipeline("cdc_identity")
    database.execute("alter table items replica identity nothing")
    with pytest.raises(Exception) as refused:
        run(pipeline)
    assert "ALTER TABLE public.items REPLICA IDENTITY DEFAULT" in str(_source_error(refused.value))
    database.execute(
        "alter table items replica identity default",
        "create table loose (v text)",
        "alter publication " + f"pub_{database.name} add table loose",
    )
    with pytest.raises(Exception) as refused:
        run(pipeline, ["items", "loose"])
    message = str(_source_error(refused.value))
    assert "public.loose has no primary key" in message and "ADD PRIMARY KEY" in message


def _source_error(exc: BaseException) -> SourceError:
    from flows.ingest import source_error_in

    error = source_error_in(exc)
    assert error is not None, repr(exc)
    return error
