"""Profiles of real tables in a DuckDB file: every metric per column type, the top values of
low-cardinality columns, and sampling above ``ELT_PROFILE_SAMPLE_ROWS``."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from flows.config import Settings, load_settings
from flows.profiles import ProfiledTable, profile_tables

ROWS = 5_000


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("ELT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ELT_DUCKDB_PATH", str(tmp_path / "warehouse.duckdb"))
    settings = load_settings("duckdb")
    with duckdb.connect(str(settings.duckdb_path)) as con:
        con.execute("create schema raw_shop")
        con.execute(
            f"""create table raw_shop.orders as select
                i as id,
                case when i % 4 = 0 then null else i * 2.5 end as amount,
                ['paid', 'open', 'refunded'][i % 3 + 1] as status,
                i % 2 = 0 as is_gift,
                timestamp '2026-12-01' + to_seconds(i) as created_at,
                '{{"k": 1}}'::json as payload,
                'x' as _dlt_load_id
            from range({ROWS}) as t(i)"""
        )
    return settings


def metrics(records: list, column: str | None) -> dict[str, float | str | None]:
    return {r.metric: r.detail or r.value for r in records if r.column_name == column}


def test_every_column_gets_the_metrics_of_its_type(settings: Settings) -> None:
    records = profile_tables(settings, [ProfiledTable("raw_shop", "orders")], "run-1")

    assert metrics(records, None) == {"row_count": ROWS}
    amount = metrics(records, "amount")
    assert amount["null_fraction"] == 0.25
    assert amount["min"] == 2.5 and amount["max"] == (ROWS - 1) * 2.5
    assert {"distinct_count", "mean", "stddev"} <= amount.keys()
    status = metrics(records, "status")
    assert status["min_length"] == 4 and status["max_length"] == 8
    assert json.loads(str(status["top_values"])) == [["open", 1667], ["paid", 1667], ["refunded", 1666]]
    assert metrics(records, "is_gift")["mean"] == 0.5
    assert metrics(records, "payload") == {"null_fraction": 0.0}  # JSON: only how often it is missing
    assert "top_values" not in metrics(records, "id")  # thousands of distinct values
    assert not metrics(records, "_dlt_load_id")  # dlt's own columns are not the data's
    assert {r.run_id for r in records} == {"run-1"} and {r.sampled_rows for r in records} == {ROWS}


def test_a_table_above_the_sample_size_is_profiled_from_a_sample(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ELT_PROFILE_SAMPLE_ROWS", "1000")
    records = profile_tables(settings, [ProfiledTable("raw_shop", "orders")], "run-2")

    # THEN the row count is the table's, every other metric comes from 1,000 sampled rows
    assert metrics(records, None) == {"row_count": ROWS}
    assert {r.sampled_rows for r in records} == {1000} and {r.table_rows for r in records} == {ROWS}
    counts = [n for _, n in json.loads(str(metrics(records, "status")["top_values"]))]
    assert sum(counts) == 1000
    assert 0.15 < float(metrics(records, "amount")["null_fraction"] or 0) < 0.35
