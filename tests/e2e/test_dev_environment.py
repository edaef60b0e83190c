"""A developer's environment (``ELT_ENV=dev``) runs the whole flow beside production, for real:
every dataset and schema it writes carries its prefix, the contracts follow, and it
replicates the shop through its own CDC slot, never production's. The run is the session's
(tests/support/first_runs.py): its marts are DuckDB's side of the cross-warehouse agreement."""

from __future__ import annotations

from pathlib import Path

import duckdb
import psycopg2
import pytest

from flows.report import RunSummary
from tests.support.first_runs import DEV_PREFIX, ORDERS_LOADED, FirstRun

pytestmark = [pytest.mark.e2e]

PREFIX = DEV_PREFIX


@pytest.fixture(scope="module")
def dev_run(duckdb_dev_first_run: FirstRun) -> tuple[RunSummary, str, Path]:
    """The session's developer-environment run (tests/support/first_runs.py)."""
    run = duckdb_dev_first_run
    return run.summary, run.sources.shop_admin_dsn, Path(run.settings["ELT_DUCKDB_PATH"])


def test_every_schema_the_run_wrote_carries_the_prefix(dev_run: tuple[RunSummary, str, Path]) -> None:
    summary, _, warehouse = dev_run
    assert summary.ok, summary.error
    assert {ingest.dataset for ingest in summary.ingests} >= {f"{PREFIX}raw_shop", f"{PREFIX}raw_stripe"}
    with duckdb.connect(str(warehouse), read_only=True) as con:
        schemas = {
            name
            for (name,) in con.execute(
                "select schema_name from information_schema.schemata where catalog_name = current_database()"
            ).fetchall()
        }
        assert {name for name in schemas if name != "main" and not name.startswith(PREFIX)} == set()
        (orders,) = con.execute(f"select count(*) from {PREFIX}analytics_marts.fct_orders").fetchone()
    assert orders == ORDERS_LOADED
    # the gates checked the developer's tables, not production's
    assert summary.contracts and all(result.passed for result in summary.contracts)
    assert all(result.dataset.startswith(PREFIX) for result in summary.contracts)


def test_the_developer_replicates_through_an_own_slot(dev_run: tuple[RunSummary, str, Path]) -> None:
    _, shop_dsn, _ = dev_run
    with psycopg2.connect(shop_dsn) as con, con.cursor() as cursor:
        cursor.execute("select slot_name from pg_replication_slots")
        assert [name for (name,) in cursor.fetchall()] == [f"{PREFIX}elt_shop"]
