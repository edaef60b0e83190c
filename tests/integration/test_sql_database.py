"""The SQL database source against a real PostgreSQL, into a real DuckDB file.

GIVEN a table in PostgreSQL and a YAML file naming it, WHEN dlt runs the source, THEN
DuckDB holds exactly the source's rows with exact types, and later runs load exactly
the changes (including rows committed late with the last cursor value), a backfill
reloads exactly its window, and a fresh worker resumes from the warehouse's state.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import dlt
import duckdb
import pytest

from dlt_sources.errors import SourceError, SourceUnreachable
from dlt_sources.sql_database import DEFAULT_DIR, Window, declared_databases, load_file
from dlt_sources.sql_database.columns import ConversionError
from flows.config import environment
from flows.ingest import source_error_in
from standins.postgres import free_port
from tests.support.sql_database import INCREMENTAL_ITEMS, SOURCE, execute, write_config

DATASET = f"raw_{SOURCE}"

ITEMS_DDL = """
create table items (
    id bigint primary key,
    amount numeric(12, 2),
    big numeric(30, 6),
    happened_at timestamptz,
    local_at timestamp,
    doc jsonb,
    raw_doc json,
    ref uuid,
    tags int[],
    label text,
    flag boolean,
    ratio float8,
    day date,
    secret text,
    status text not null default 'live',
    updated_at timestamptz not null
);
create index on items (updated_at);
"""


def source(folder: Path, **kwargs: Any) -> Any:
    from dlt_sources.sql_database import sql_database_source

    return sql_database_source(load_file(folder / f"{SOURCE}.yml"), **kwargs)


def run(pipeline: dlt.Pipeline, dlt_source: Any) -> dict[str, int]:
    pipeline.run(dlt_source, loader_file_format="parquet").raise_on_failed_jobs()
    counts = pipeline.last_trace.last_normalize_info.row_counts
    return {table: n for table, n in counts.items() if not table.startswith("_dlt")}


def query(db_path: Path, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(db_path), read_only=True) as con:
        return con.execute(sql).fetchall()


def seed_items(dsn: str, n: int, updated_at: str = "2025-01-01 00:00+00") -> None:
    execute(dsn, ITEMS_DDL)
    execute(
        dsn,
        """insert into items (id, amount, label, updated_at)
           select g, g * 1.5, 'row ' || g, %s::timestamptz + (g %% 5) * interval '1 minute'
           from generate_series(1, %s) g""",
        (updated_at, n),
    )


def test_types_values_filter_and_exclusions_are_exact(
    tmp_path: Path, pgtest_dsn: str, make_pipeline, db_path
):
    execute(pgtest_dsn, ITEMS_DDL)
    execute(
        pgtest_dsn,
        """insert into items values
        (1, -1234567890.12, 123456789012345678901234.123456, '2024-03-01 10:00:00.123456+05:30',
         '2024-03-01 10:00:00', '{"a": [1, "ü"], "b": null}', '{"x":1}',
         'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
         '{1,NULL,3}', 'naïve ☃ 日本', true, -0.5, '2024-02-29', 'hide me', 'live', '2025-01-01 00:00+00'),
        (2, null, null, null, null, null, null, null, null, null, null, null, null, null, 'live',
         '2025-01-01 00:00+00'),
        (3, 0.01, -0.000001, '2024-03-01 00:00-08', null, '[]', null, null, '{}', '', false, 1e300,
         null, null, 'draft', '2025-01-01 00:00+00')""",
    )
    folder = tmp_path / "defs"
    write_config(
        folder,
        """
        credentials: "{{ secrets.sources.pgtest.credentials }}"
        tables:
          - name: items
            primary_key: id
            cursor: updated_at
            filter: "status <> 'draft'"
            exclude_columns: [secret]
        """,
    )
    assert run(make_pipeline("types"), source(folder)) == {"items": 2}

    types = dict(
        query(
            db_path,
            "select column_name, data_type from information_schema.columns "
            f"where table_schema = '{DATASET}' and table_name = 'items'",
        )
    )
    assert "secret" not in types
    assert types["amount"] == "DECIMAL(12,2)"
    assert types["big"] == "DECIMAL(30,6)"
    assert types["happened_at"] == "TIMESTAMP WITH TIME ZONE"
    assert types["local_at"] == "TIMESTAMP"
    assert types["doc"] == types["raw_doc"] == types["tags"] == "JSON"
    assert types["ref"] == types["label"] == "VARCHAR"
    assert (types["flag"], types["ratio"], types["day"]) == ("BOOLEAN", "DOUBLE", "DATE")

    rows = query(
        db_path,
        f"select id, amount, big, epoch_us(happened_at), local_at, doc::varchar, raw_doc::varchar, ref, "
        f"tags::varchar, label, flag, ratio, day from {DATASET}.items order by id",
    )
    first, second = rows
    assert first[1] == Decimal("-1234567890.12")
    assert first[2] == Decimal("123456789012345678901234.123456")
    moment = datetime(2024, 3, 1, 4, 30, 0, 123456, tzinfo=UTC)  # 10:00 at +05:30
    assert first[3] == int(moment.timestamp() * 1_000_000)
    assert first[4] == datetime(2024, 3, 1, 10, 0)
    assert first[5] == '{"a": [1, "ü"], "b": null}'
    assert first[6] == '{"x":1}'
    assert first[7] == "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
    assert first[8] == "[1,null,3]"
    assert first[9:] == ("naïve ☃ 日本", True, -0.5, datetime(2024, 2, 29).date())
    assert second[0] == 2 and all(value is None for value in second[1:])


def test_increments_merge_changes_and_catch_late_rows_at_the_last_cursor_value(
    tmp_path: Path, pgtest_dsn: str, make_pipeline, db_path
):
    seed_items(pgtest_dsn, 100)
    folder = tmp_path / "defs"
    write_config(folder, INCREMENTAL_ITEMS)
    pipeline = make_pipeline("incremental")
    assert run(pipeline, source(folder)) == {"items": 100}
    assert run(pipeline, source(folder)) == {}  # nothing changed: nothing read

    last = "2025-01-01 00:04+00"  # the largest cursor value loaded (ids 4, 9, …, 99)
    execute(
        pgtest_dsn,
        "update items set label = 'changed', updated_at = '2025-01-02 00:00+00' where id in (1, 2)",
    )
    execute(pgtest_dsn, "insert into items (id, label, updated_at) values (500, 'later key', %s)", (last,))
    assert run(pipeline, source(folder)) == {"items": 3}

    # Committed late with the last cursor value and a key below the mark: still found.
    execute(
        pgtest_dsn,
        "insert into items (id, label, updated_at) values (0, 'late', '2025-01-02 00:00+00'), "
        "(300, 'late too', '2025-01-02 00:00+00')",
    )
    execute(pgtest_dsn, "update items set label = 'late', updated_at = '2025-01-02 00:00+00' where id = 50")
    assert run(pipeline, source(folder)) == {"items": 5}  # the boundary is read again (merge)

    got = query(db_path, f"select count(*), count(distinct id) from {DATASET}.items")
    assert got == [(103, 103)]
    labels = dict(
        query(db_path, f"select id, label from {DATASET}.items where id in (0, 1, 2, 50, 300, 500)")
    )
    assert labels == {0: "late", 1: "changed", 2: "changed", 50: "late", 300: "late too", 500: "later key"}
    assert run(pipeline, source(folder)) == {}


def test_backfill_reloads_exactly_its_window_and_keeps_the_cursor(
    tmp_path: Path, pgtest_dsn: str, make_pipeline, db_path
):
    seed_items(pgtest_dsn, 50)  # updated_at 00:00 … 00:04 on 2025-01-01
    folder = tmp_path / "defs"
    write_config(folder, INCREMENTAL_ITEMS)
    pipeline = make_pipeline("backfill")
    run(pipeline, source(folder))
    stored = pipeline.state["sources"][SOURCE]["resources"]["items"]

    # Change labels without touching the cursor: only a backfill can bring them over.
    execute(pgtest_dsn, "update items set label = 'fixed'")
    window = Window("2025-01-01T00:01:00Z", "2025-01-01T00:03:00Z")  # minutes 1 and 2
    assert run(pipeline, source(folder, backfill=window)) == {"items": 20}
    fixed = query(db_path, f"select count(*) from {DATASET}.items where label = 'fixed'")
    assert fixed == [(20,)]
    assert query(db_path, f"select min(id % 5), max(id % 5) from {DATASET}.items where label = 'fixed'") == [
        (1, 2)
    ]
    assert pipeline.state["sources"][SOURCE]["resources"]["items"] == stored
    assert run(pipeline, source(folder)) == {}

    with environment({"SOURCES__PGTEST__BACKFILL": "2025-01-01T00:04:00Z/2025-01-02T00:00:00Z"}):
        assert run(pipeline, source(folder)) == {"items": 10}  # the setting does the same


def test_partitioned_full_load_and_replace_lose_and_duplicate_nothing(
    tmp_path: Path, pgtest_dsn: str, make_pipeline, db_path
):
    seed_items(pgtest_dsn, 5000)
    execute(pgtest_dsn, "delete from items where id between 1000 and 1999")  # a hole in the key range
    execute(pgtest_dsn, "create table kinds (code text primary key, name text)")
    execute(pgtest_dsn, "insert into kinds values ('a', 'Ä'), ('b', null)")
    folder = tmp_path / "defs"
    write_config(
        folder,
        """
        credentials: "{{ secrets.sources.pgtest.credentials }}"
        tables:
          - {name: items, primary_key: id, cursor: updated_at, partitions: 3}
          - {name: kinds, primary_key: code}
        """,
    )
    pipeline = make_pipeline("partitions")
    assert run(pipeline, source(folder)) == {"items": 4000, "kinds": 2}
    assert query(db_path, f"select count(*), count(distinct id), sum(id) from {DATASET}.items") == [
        (4000, 4000, sum(range(1, 5001)) - sum(range(1000, 2000)))
    ]
    execute(pgtest_dsn, "delete from kinds where code = 'b'")
    assert run(pipeline, source(folder)) == {"kinds": 1}
    assert query(db_path, f"select code, name from {DATASET}.kinds") == [("a", "Ä")]


def test_a_fresh_worker_resumes_from_the_warehouse_state(tmp_path: Path, pgtest_dsn: str, db_path):
    seed_items(pgtest_dsn, 200)
    folder = tmp_path / "defs"
    write_config(folder, INCREMENTAL_ITEMS)

    def worker() -> dlt.Pipeline:
        return dlt.pipeline(
            pipeline_name="resume",
            destination=dlt.destinations.duckdb(str(db_path)),
            dataset_name=DATASET,
            pipelines_dir=str(tmp_path / "pipelines"),
        )

    assert run(worker(), source(folder)) == {"items": 200}
    shutil.rmtree(tmp_path / "pipelines")  # a new worker with an empty disk
    # The cursor and the tiebreak mark come back from the warehouse: the 40 rows at the
    # last cursor value are not read again.
    assert run(worker(), source(folder)) == {}
    shutil.rmtree(tmp_path / "pipelines")
    execute(pgtest_dsn, "update items set label = 'new', updated_at = now() where id in (1, 2, 3)")
    assert run(worker(), source(folder)) == {"items": 3}
    assert query(db_path, f"select count(*), count(distinct id) from {DATASET}.items") == [(200, 200)]


def test_a_value_that_does_not_fit_names_source_table_column_and_row(
    tmp_path: Path, pgtest_dsn: str, make_pipeline, monkeypatch: pytest.MonkeyPatch
):
    # with the default `bad_records: quarantine` the row goes to _rejected_records instead
    # (tests/integration/test_bad_input.py)
    monkeypatch.setenv("SOURCES__PGTEST__BAD_RECORDS", "fail")
    seed_items(pgtest_dsn, 3)
    execute(pgtest_dsn, "update items set amount = 'NaN' where id = 2")
    folder = tmp_path / "defs"
    write_config(folder, INCREMENTAL_ITEMS)
    with pytest.raises(Exception) as caught:
        run(make_pipeline("bad_value"), source(folder))
    error = source_error_in(caught.value)
    assert isinstance(error, ConversionError)
    message = str(error)
    assert all(part in message for part in (SOURCE, "`items`", "`amount`", "id=2", "'NaN'"))


def test_an_unreachable_database_fails_in_one_line_naming_the_setting(tmp_path: Path):
    folder = tmp_path / "defs"
    write_config(folder, INCREMENTAL_ITEMS)
    dsn = f"postgresql://reader:s3cret-pw@127.0.0.1:{free_port()}/nowhere"
    with environment({"SOURCES__PGTEST__CREDENTIALS": dsn}), pytest.raises(SourceUnreachable) as caught:
        source(folder)
    message = str(caught.value)
    assert "sources.pgtest.credentials" in message and "s3cret-pw" not in message
    assert "\n" not in message


def test_config_mistakes_against_the_database_name_file_table_and_field(tmp_path: Path, pgtest_dsn: str):
    seed_items(pgtest_dsn, 1)
    folder = tmp_path / "defs"
    write_config(folder, INCREMENTAL_ITEMS.replace("cursor: updated_at", "cursor: modified_at"))
    with pytest.raises(SourceError, match=r"pgtest.yml: table `items`: `cursor` names column `modified_at`"):
        source(folder)
    write_config(folder, INCREMENTAL_ITEMS.replace("name: items", "name: missing"))
    with pytest.raises(SourceError, match=r"table `missing`: the database has no such table"):
        source(folder)


def test_declared_databases_lists_each_file_and_the_shipped_example_is_valid(tmp_path: Path):
    folder = tmp_path / "defs"
    write_config(folder, INCREMENTAL_ITEMS)
    assert list(declared_databases(folder)) == [SOURCE]
    assert declared_databases(DEFAULT_DIR) == {}  # examples/ is documentation, not loaded
    example = load_file(DEFAULT_DIR / "examples" / "inventory.yml")
    assert [table.name for table in example.tables] == ["products", "stock_movements", "warehouses"]
