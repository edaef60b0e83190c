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
from pathlib import Path

import pytest

from dlt_sources.errors import SourceError
from tests.support.cdc import (
    ITEM_COLUMNS,
    ITEMS_SQL,
    NOTE_COLUMNS,
    SOURCE,
    CdcDatabase,
    RandomWorkload,
    assert_replicated,
    create_database,
    incompressible,
    run_cdc,
    warehouse_rows,
)
from tests.support.postgres import ModuleDatabases

pytestmark = pytest.mark.slow

DATASET = "raw_cdc_test"


@pytest.fixture
def database(
    postgres_databases: ModuleDatabases, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> CdcDatabase:
    name = postgres_databases.name(request.node.name.removeprefix("test_"))
    created = create_database(postgres_databases.server, name, ITEMS_SQL, ["items", "notes"])
    for key, value in created.environment().items():
        monkeypatch.setenv(key, value)
    return created


def assert_all_replicated(database: CdcDatabase, db_path: Path) -> None:
    assert_replicated(database, db_path, DATASET, "items", ITEM_COLUMNS)
    assert_replicated(database, db_path, DATASET, "notes", NOTE_COLUMNS)


def test_random_change_batches_replicate_exactly(database, make_pipeline, db_path, tmp_path) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(20261128)
    workload = RandomWorkload(rng)
    database.execute(*[workload.insert_item() for _ in range(150)])
    pipeline = make_pipeline("cdc_random")
    # GIVEN the initial snapshot
    report = run_cdc(pipeline)
    assert any("snapshot" in note for note in report.notes)
    assert_all_replicated(database, db_path)
    for batch in range(4):
        # WHEN random transactions commit and the pipeline runs
        for _ in range(25):
            database.execute(*workload.statements())
        if batch == 2:  # a fresh worker: the position must come from the warehouse
            shutil.rmtree(tmp_path / "pipelines")
            pipeline = make_pipeline("cdc_random")
        run_cdc(pipeline)
        # THEN the warehouse equals the source, deletes included
        assert_all_replicated(database, db_path)
    # AND a run with nothing new loads nothing
    run_cdc(pipeline)
    counts = pipeline.last_trace.last_normalize_info.row_counts
    assert {table: n for table, n in counts.items() if not table.startswith("_dlt")} == {}


def test_unchanged_toast_value_survives_updates_in_later_runs(database, make_pipeline, db_path) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(1)
    big = incompressible(rng, 8_000)
    database.execute(("insert into items (id, name, big) values (1, 'a', %s), (2, 'b', %s)", (big, big)))
    pipeline = make_pipeline("cdc_toast")
    run_cdc(pipeline)
    # WHEN only small columns change, in this run and twice in one transaction in the next
    database.execute("update items set name = 'a2' where id = 1")
    run_cdc(pipeline)
    database.execute(
        "update items set name = 'a3' where id = 1",
        "update items set qty = 7 where id = 1",
        "update items set qty = 8 where id = 2",
    )
    run_cdc(pipeline)
    # THEN the big values are the originals, never NULL
    rows = warehouse_rows(db_path, DATASET, "items", ["id", "name", "qty", "big"], "order by id")
    assert rows == [(1, "a3", 7, big), (2, "b", 8, big)]
    assert_all_replicated(database, db_path)


def test_added_and_dropped_columns_follow_the_source(database, make_pipeline, db_path) -> None:  # type: ignore[no-untyped-def]
    database.execute("insert into items (id, name) values (1, 'a'), (2, 'b')")
    pipeline = make_pipeline("cdc_ddl")
    run_cdc(pipeline)
    # WHEN a column is added and filled, in the same run as earlier changes
    database.execute("update items set name = 'a2' where id = 1")
    database.execute(
        "alter table items add column color text",
        "update items set color = 'red' where id = 2",
        "insert into items (id, name, color) values (3, 'c', 'blue')",
    )
    run_cdc(pipeline)
    rows = warehouse_rows(db_path, DATASET, "items", ["id", "name", "color"], "order by id")
    assert rows == [(1, "a2", None), (2, "b", "red"), (3, "c", "blue")]
    # WHEN a column is dropped, rows written afterwards leave it empty
    database.execute("alter table items drop column color", "insert into items (id, name) values (4, 'd')")
    run_cdc(pipeline)
    rows = warehouse_rows(db_path, DATASET, "items", ["id", "color"], "order by id")
    assert rows == [(1, None), (2, "red"), (3, "blue"), (4, None)]


def test_truncate_removes_earlier_rows_and_warns(database, make_pipeline, db_path) -> None:  # type: ignore[no-untyped-def]
    database.execute("insert into items (id, name) values (1, 'a'), (2, 'b')")
    pipeline = make_pipeline("cdc_truncate")
    run_cdc(pipeline)
    # WHEN the table is truncated and refilled before the next run
    database.execute("insert into items (id, name) values (3, 'c')")
    database.execute("truncate items", "insert into items (id, name) values (2, 'b-again')")
    database.execute("insert into items (id, name) values (5, 'e')")
    report = run_cdc(pipeline)
    # THEN only rows written after the TRUNCATE remain, and the report warns
    assert warehouse_rows(db_path, DATASET, "items", ["id", "name"], "order by id") == [
        (2, "b-again"),
        (5, "e"),
    ]
    assert any("TRUNCATE of public.items" in warning for warning in report.warnings)
    assert_all_replicated(database, db_path)
    # AND the next run neither warns again nor loses rows
    assert run_cdc(pipeline).warnings == []
    assert_all_replicated(database, db_path)


def test_soft_deletes_keep_the_row_flagged(database, make_pipeline, db_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv(f"SOURCES__{SOURCE.upper()}__DELETE_MODE", "soft")
    big = incompressible(random.Random(2), 5_000)
    database.execute(("insert into items (id, name, big) values (1, 'a', %s), (2, 'b', 'small')", (big,)))
    pipeline = make_pipeline("cdc_soft")
    run_cdc(pipeline)
    database.execute("delete from items where id = 1", "insert into items (id, name) values (3, 'c')")
    database.execute("update items set name = 'c2' where id = 3", "delete from items where id = 3")
    run_cdc(pipeline)
    rows = warehouse_rows(db_path, DATASET, "items", ["id", "name", "big", "_cdc_deleted"], "order by id")
    assert rows == [(1, "a", big, True), (2, "b", "small", False), (3, "c2", None, True)]


def test_tables_without_replica_identity_are_refused(database, make_pipeline, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    pipeline = make_pipeline("cdc_identity")
    database.execute("alter table items replica identity nothing")
    with pytest.raises(Exception) as refused:
        run_cdc(pipeline)
    assert "ALTER TABLE public.items REPLICA IDENTITY DEFAULT" in str(_source_error(refused.value))
    database.execute(
        "alter table items replica identity default",
        "create table loose (v text)",
        "alter publication " + f"pub_{database.name} add table loose",
    )
    with pytest.raises(Exception) as refused:
        run_cdc(pipeline, ["items", "loose"])
    message = str(_source_error(refused.value))
    assert "public.loose has no primary key" in message and "ADD PRIMARY KEY" in message


def _source_error(exc: BaseException) -> SourceError:
    from flows.ingest import source_error_in

    error = source_error_in(exc)
    assert error is not None, repr(exc)
    return error
