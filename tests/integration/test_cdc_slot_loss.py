"""A slot that fell behind ``max_slot_wal_keep_size`` is lost: the run fails at once, without
retries, naming the remediation; a re-snapshot then brings the warehouse back to the source.

Its own server: shrinking the WAL kept for slots would invalidate other tests' slots.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest

from dlt_sources.postgres_cdc import SlotLost
from flows.ingest import is_transient, source_error_in
from standins.postgres import PostgresServer, running_postgres
from tests.support.cdc import ITEM_COLUMNS, ITEMS_SQL, SOURCE, assert_replicated, create_database, run_cdc
from tests.support.postgres import execute_as_admin

DATASET = "raw_cdc_slot_loss"


@pytest.fixture
def server(module_dir: Path) -> Iterator[PostgresServer]:
    with running_postgres(module_dir / "pg", durable=False) as postgres:
        yield postgres


def test_lost_slot_fails_fast_and_resnapshot_recovers(server, make_pipeline, db_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    database = create_database(server, "loss", ITEMS_SQL, ["items", "notes"])
    for key, value in database.environment().items():
        monkeypatch.setenv(key, value)
    database.execute("insert into items (id, name) values (1, 'a'), (2, 'b')")
    pipeline = make_pipeline("cdc_loss")
    run_cdc(pipeline)
    # GIVEN the slot falls behind the WAL the server keeps for slots, and a checkpoint removes it
    database.execute("delete from items where id = 2", "insert into items (id, name) values (3, 'c')")
    execute_as_admin(server, "alter system set max_slot_wal_keep_size = '1MB'", "select pg_reload_conf()")
    for _ in range(3):
        database.execute(
            "create table filler as select g, md5(g::text) from generate_series(1, 200000) g",
            "drop table filler",
        )
        execute_as_admin(server, "select pg_switch_wal()", "checkpoint")
    with psycopg2.connect(server.dsn()) as conn, conn.cursor() as cur:
        cur.execute("select wal_status from pg_replication_slots where slot_name = 'slot_loss'")
        assert cur.fetchone() == ("lost",)
    # WHEN the pipeline runs THEN it fails with the remediation, and is not worth retrying
    with pytest.raises(Exception) as failure:
        run_cdc(pipeline)
    error = source_error_in(failure.value)
    assert isinstance(error, SlotLost), repr(failure.value)
    assert "elt cdc resnapshot" in str(error) and "wal_status=lost" in str(error)
    assert not is_transient(failure.value)
    # WHEN the remediation runs (drop the slot, take a new snapshot)
    execute_as_admin(server, "alter system reset max_slot_wal_keep_size", "select pg_reload_conf()")
    monkeypatch.setenv(f"SOURCES__{SOURCE.upper()}__RESNAPSHOT", "true")
    report = run_cdc(pipeline)
    monkeypatch.delenv(f"SOURCES__{SOURCE.upper()}__RESNAPSHOT")
    # THEN the warehouse equals the source again (the deleted row is gone) and CDC carries on
    assert any("snapshot" in note for note in report.notes)
    assert_replicated(database, db_path, DATASET, "items", ITEM_COLUMNS)
    database.execute("update items set name = 'a2' where id = 1")
    run_cdc(pipeline)
    assert_replicated(database, db_path, DATASET, "items", ITEM_COLUMNS)
