"""The audit trail's writes on DuckDB: dlt creates each table, later rows go in through one
connection (``Warehouse.append_rows``), and both give the same rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from flows.audit import LoadRecord, query_audit, record, record_tables
from flows.build_state import ManifestRecord
from flows.config import Settings, load_settings
from tests.support.duckdb import count_opens


@dataclass(frozen=True)
class LoadWithNote(LoadRecord):
    note: str | None = "a column the table does not have yet"


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("ELT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ELT_DUCKDB_PATH", str(tmp_path / "warehouse.duckdb"))
    return load_settings("duckdb")


def load(run_id: str, rows: int, at: datetime, cls: type[LoadRecord] = LoadRecord) -> LoadRecord:
    return cls(run_id, "shop", "raw_shop", "orders", rows, at, at + timedelta(seconds=3), "loaded")


def test_rows_appended_after_the_first_load_equal_dlts(settings: Settings) -> None:
    at = datetime(2026, 12, 7, 12, tzinfo=UTC)
    record(settings, "loads", [load("dlt", 5, at)])  # no table yet: dlt creates it
    opens = count_opens(lambda: record(settings, "loads", [load("direct", 5, at), load("direct", 7, at)]))

    rows = query_audit(
        settings, "loads", "select run_id, rows, started_at, outcome, error from {table} order by 1, 2"
    )
    assert rows == [
        ("direct", 5, at, "loaded", None),
        ("direct", 7, at, "loaded", None),
        ("dlt", 5, at, "loaded", None),
    ]
    assert opens == 1  # one connection, not a dlt load
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        ids = con.execute("select _dlt_load_id, _dlt_id from elt_audit.loads").fetchall()
    assert all(load_id and row_id for load_id, row_id in ids) and len({row_id for _, row_id in ids}) == 3


def test_a_latest_only_table_keeps_one_row_and_a_new_column_goes_through_dlt(settings: Settings) -> None:
    at = datetime(2026, 12, 7, 12, tzinfo=UTC)
    for run in ("first", "second", "third"):
        record_tables(settings, {"dbt_manifests": [ManifestRecord(run, "1.11", "{}", at)]})
    assert query_audit(settings, "dbt_manifests", "select run_id from {table}") == [("third",)]

    record(settings, "loads", [load("before", 1, at)])
    record(settings, "loads", [load("with a note", 2, at, LoadWithNote)])  # dlt adds the column
    rows = query_audit(settings, "loads", "select run_id, note from {table} order by rows")
    assert rows == [("before", None), ("with a note", "a column the table does not have yet")]
