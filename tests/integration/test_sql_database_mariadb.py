"""The SQL database source against a real MariaDB server (Debian's mariadb-server), into DuckDB.

connectorx reads MySQL/MariaDB; its own decimals (decimal128(38,10)) and MariaDB's JSON
(LONGTEXT with a json_valid check) must still land as DECIMAL(p,s) and JSON.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pymysql
import pytest

from dlt_sources.sql_database import load_file, sql_database_source
from flows.config import environment
from standins.mariadb import PASSWORD, USER, MariaDbServer, running_mariadb, server_binary

SOURCE = "mariatest"
DATASET = f"raw_{SOURCE}"

pytestmark = pytest.mark.skipif(
    server_binary() is None,
    reason="MariaDB server not installed (apt-get install mariadb-server; .ci/run installs it)",
)


@pytest.fixture(scope="module")
def mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDbServer]:
    with running_mariadb(tmp_path_factory.mktemp("mariadb") / "data") as server:
        yield server


def execute(server: MariaDbServer, *statements: str) -> None:
    conn = pymysql.connect(
        host=server.host, port=server.port, user=USER, password=PASSWORD, database="shop", autocommit=True
    )
    with conn.cursor() as cur:
        for sql in statements:
            cur.execute(sql)
    conn.close()


@pytest.fixture
def shop(mariadb: MariaDbServer) -> Iterator[MariaDbServer]:
    conn = pymysql.connect(
        host=mariadb.host, port=mariadb.port, user=USER, password=PASSWORD, autocommit=True
    )
    with conn.cursor() as cur:
        cur.execute("drop database if exists shop")
        cur.execute("create database shop character set utf8mb4")
    conn.close()
    with environment({"SOURCES__MARIATEST__CREDENTIALS": mariadb.url("shop").replace("+pymysql", "")}):
        yield mariadb


def run(pipeline: Any, folder: Path) -> dict[str, int]:
    source = sql_database_source(load_file(folder / f"{SOURCE}.yml"))
    pipeline.run(source, loader_file_format="parquet").raise_on_failed_jobs()
    counts = pipeline.last_trace.last_normalize_info.row_counts
    return {table: n for table, n in counts.items() if not table.startswith("_dlt")}


def test_mariadb_types_incremental_merge_and_filter(
    tmp_path: Path, shop: MariaDbServer, make_pipeline, db_path
):
    execute(
        shop,
        """create table orders (
            id bigint primary key,
            amount decimal(12, 2),
            big decimal(30, 4),
            doc json,
            note varchar(50),
            placed_at datetime(6),
            status varchar(10) not null,
            secret varchar(10),
            updated_at datetime(6) not null
        )""",
        """insert into orders values
            (1, -12345678.91, 123456789012345678901234.5678, '{"a": [1, "ü"]}', 'héllo ☃',
             '2024-01-01 10:00:00.123456', 'paid', 'x', '2025-01-01 00:00:00'),
            (2, null, null, null, null, null, 'paid', null, '2025-01-01 00:00:00'),
            (3, 1, 1, '{}', 'draft', null, 'draft', null, '2025-01-01 00:00:00')""",
    )
    folder = tmp_path / "defs"
    folder.mkdir()
    (folder / f"{SOURCE}.yml").write_text(
        textwrap.dedent(
            """
            credentials: "{{ secrets.sources.mariatest.credentials }}"
            tables:
              - name: orders
                primary_key: id
                cursor: updated_at
                filter: "status <> 'draft'"
                exclude_columns: [secret]
            """
        )
    )
    pipeline = make_pipeline("mariadb")
    assert run(pipeline, folder) == {"orders": 2}
    assert run(pipeline, folder) == {}

    execute(
        shop,
        "update orders set amount = 99.99, updated_at = '2025-01-02 00:00:00' where id = 2",
        "insert into orders (id, status, updated_at) values (4, 'paid', '2025-01-01 00:00:00')",
    )
    # Row 2 left the last cursor value, so the tiebreak mark no longer holds and the run
    # reads that value again (row 1 too): merged, not duplicated.
    assert run(pipeline, folder) == {"orders": 3}

    with duckdb.connect(str(db_path), read_only=True) as con:
        types = dict(
            con.execute(
                "select column_name, data_type from information_schema.columns "
                f"where table_schema = '{DATASET}' and table_name = 'orders'"
            ).fetchall()
        )
        rows = con.execute(
            f"select id, amount, big, doc::varchar, note, placed_at from {DATASET}.orders order by id"
        ).fetchall()
    assert "secret" not in types
    assert (types["amount"], types["big"], types["doc"]) == ("DECIMAL(12,2)", "DECIMAL(30,4)", "JSON")
    assert types["placed_at"] == "TIMESTAMP"
    assert rows == [
        (
            1,
            Decimal("-12345678.91"),
            Decimal("123456789012345678901234.5678"),
            '{"a": [1, "ü"]}',
            "héllo ☃",
            datetime(2024, 1, 1, 10, 0, 0, 123456),
        ),
        (2, Decimal("99.99"), None, None, None, None),
        (4, None, None, None, None, None),
    ]
