"""``elt backfill`` for real: a SQL database source on PostgreSQL, loaded into DuckDB by the
``backfill`` Prefect flow in daily chunks checkpointed in the warehouse.

A backfill run twice gives the same warehouse as run once; one that stopped half way
resumes at the first chunk not done.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from dlt_sources.registry import SOURCES
from dlt_sources.sql_database import SOURCES_DIR_ENV, declared_databases
from flows.backfill import backfill, chunks
from flows.cli import app
from flows.ingest import ingest_sources
from tests.support.sql_database import INCREMENTAL_ITEMS, SOURCE, execute, write_config

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]

DAYS = 10  # rows on 2025-01-01 … 2025-01-10, 30 a day
WINDOW = (date(2025, 1, 3), date(2025, 1, 7))  # 4 days, each a chunk


@pytest.fixture
def warehouse(tmp_path: Path, pgtest_dsn: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The source's YAML registered like any SQL database source; the warehouse in tmp_path."""
    execute(
        pgtest_dsn,
        """create table items (id bigint primary key, label text, updated_at timestamptz not null);
           insert into items select g, 'row ' || g,
               timestamptz '2025-01-01 00:00+00' + (g %% %s) * interval '1 day' + (g %% 7) * interval '1 hour'
           from generate_series(1, %s) g""",
        (DAYS, DAYS * 30),
    )
    folder = tmp_path / "sql_sources"
    write_config(folder, INCREMENTAL_ITEMS)
    monkeypatch.setenv(SOURCES_DIR_ENV, str(folder))
    monkeypatch.setitem(SOURCES, SOURCE, declared_databases(folder)[SOURCE])
    monkeypatch.setenv("ELT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ELT_DUCKDB_PATH", str(tmp_path / "warehouse.duckdb"))
    yield tmp_path / "warehouse.duckdb"


def fingerprint(path: Path) -> tuple[int, str]:
    """Row count and a hash of every row of the loaded table (dlt's own columns left out)."""
    with duckdb.connect(str(path), read_only=True) as con:
        rows = con.execute(f"select id, label, updated_at from raw_{SOURCE}.items order by id").fetchall()
    return len(rows), hashlib.sha256(repr(rows).encode()).hexdigest()


def test_a_backfill_twice_equals_once_and_resumes_after_a_stop(warehouse: Path, pgtest_dsn: str) -> None:
    from prefect import flow

    from flows.config import load_settings

    @flow(name="first-load")
    def first_load() -> None:
        ingest_sources([SOURCE], load_settings(), run_id="first-load")

    first_load()
    # labels fixed in the source without moving the cursor: only a backfill brings them over
    execute(pgtest_dsn, "update items set label = label || ' (fixed)'")
    assert fingerprint(warehouse)[0] == DAYS * 30

    once = backfill(SOURCE, *WINDOW)
    assert (len(once.chunks_loaded), once.chunks_skipped) == (4, [])
    after_once = fingerprint(warehouse)
    with duckdb.connect(str(warehouse), read_only=True) as con:
        fixed_days = con.execute(
            f"select distinct cast(updated_at at time zone 'UTC' as date) from raw_{SOURCE}.items"
            " where label like '%(fixed)' order by 1"
        ).fetchall()
    assert [day for (day,) in fixed_days] == [date(2025, 1, day) for day in range(3, 7)]

    # run again: every chunk is checkpointed, nothing changes
    again = backfill(SOURCE, *WINDOW)
    assert (again.chunks_loaded, len(again.chunks_skipped)) == ([], 4)
    # forced to reload every chunk: merged on the key, still nothing changes
    restarted = backfill(SOURCE, *WINDOW, restart=True)
    assert len(restarted.chunks_loaded) == 4
    assert fingerprint(warehouse) == after_once

    # a backfill that stopped after 2 chunks resumes with the other 2
    with duckdb.connect(str(warehouse)) as con:
        con.execute(
            "delete from elt_audit.backfills where chunk_start >= timestamptz '2025-01-05 00:00+00'"
            " and backfill_id like 'pgtest:2025-01-03/2025-01-07:%'"
        )
    resumed = backfill(SOURCE, *WINDOW)
    assert (len(resumed.chunks_loaded), len(resumed.chunks_skipped)) == (2, 2)
    assert fingerprint(warehouse) == after_once


def test_a_backfill_keeps_a_forgotten_person_out_and_counts_them(
    warehouse: Path, pgtest_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect import flow

    from flows.config import load_settings

    # GIVEN items bought by people, the buyer's email declared personal (items are kept, redacted)
    execute(pgtest_dsn, "alter table items add column buyer_email text")
    execute(pgtest_dsn, "update items set buyer_email = 'buyer' || (id % 5) || '@example.com'")
    folder = warehouse.parent / "sql_sources"
    write_config(folder, INCREMENTAL_ITEMS + BUYERS_ARE_PEOPLE)
    monkeypatch.setitem(SOURCES, SOURCE, declared_databases(folder)[SOURCE])

    @flow(name="first-load")
    def first_load() -> None:
        ingest_sources([SOURCE], load_settings(), run_id="first-load")

    first_load()
    assert buyers(warehouse) == {f"buyer{i}@example.com": DAYS * 30 // 5 for i in range(5)}
    # WHEN one buyer is forgotten
    forgotten = CliRunner().invoke(app, ["privacy", "forget", "--subject", "email:Buyer3@example.com"])
    assert forgotten.exit_code == 0, forgotten.output
    # THEN their items stay, without them
    assert buyers(warehouse) == {f"buyer{i}@example.com": 60 for i in (0, 1, 2, 4)} | {None: 60}
    # WHEN a window is backfilled from the source, which still has them
    summary = backfill(SOURCE, *WINDOW)
    # THEN the backfill kept them out and counted it
    days = range((WINDOW[0] - date(2025, 1, 1)).days, (WINDOW[1] - date(2025, 1, 1)).days)
    assert summary.kept_out == sum(1 for g in range(1, DAYS * 30 + 1) if g % DAYS in days and g % 5 == 3)
    assert buyers(warehouse) == {f"buyer{i}@example.com": 60 for i in (0, 1, 2, 4)} | {None: 60}


BUYERS_ARE_PEOPLE = """
privacy:
  items:
    erasure: redact
    columns:
      buyer_email: {pii: email, subject: email}
"""


def buyers(path: Path) -> dict[str | None, int]:
    with duckdb.connect(str(path), read_only=True) as con:
        rows = con.execute(f"select buyer_email, count(*) from raw_{SOURCE}.items group by 1").fetchall()
    return dict(rows)


def test_windows_and_unsupported_sources_are_refused_clearly(warehouse: Path) -> None:
    assert [c.window() for c in chunks(date(2025, 1, 1), date(2025, 1, 2), "10h")] == [
        "2025-01-01T00:00:00/2025-01-01T10:00:00",
        "2025-01-01T10:00:00/2025-01-01T20:00:00",
        "2025-01-01T20:00:00/2025-01-02T00:00:00",
    ]
    result = CliRunner().invoke(
        app, ["backfill", "--source", "shop", "--start", "2025-01-01", "--end", "2025-01-02"]
    )
    assert result.exit_code == 1
    assert (
        "source 'shop' can't reload a time window" in result.output and "elt cdc resnapshot" in result.output
    )
    result = CliRunner().invoke(
        app, ["backfill", "-s", SOURCE, "--start", "2025-01-02", "--end", "2025-01-01"]
    )
    assert result.exit_code == 1 and "--end must be after --start" in result.output
