"""The whole ELT flow, for real: PostgreSQL and the Stripe stand-in on 127.0.0.1, dlt into
a DuckDB file, dbt through prefect-dbt, Soda contracts, all inside Prefect runs.

The runs build on each other (first load → unchanged re-run on a fresh worker →
source changes → unreachable source), so they share one module-scoped set-up.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.config import load_settings
from flows.demo import DemoSources, demo_sources, environment
from flows.elt import EltRunFailed, elt
from tests.demo_tables import (
    COUNTED_TABLES,
    assert_marts_show_the_changes,
    assert_moved_customers_versioned,
    change_the_sources,
    expected_change_rows,
    rows_loaded,
)

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("prefect_harness")]

N_ORDERS = 3_000


@pytest.fixture(scope="module")
def sources(module_dir: Path) -> Iterator[DemoSources]:
    workdir = module_dir
    warehouse = {"ELT_DUCKDB_PATH": str(workdir / "warehouse.duckdb")}
    with (
        demo_sources(workdir / "state", n_orders=N_ORDERS, durable=False) as demo,
        environment(demo.environment() | warehouse),
    ):
        yield demo


def counts(path: Path) -> dict[str, int]:
    with duckdb.connect(str(path), read_only=True) as con:
        return {table: con.execute(f"select count(*) from {table}").fetchone()[0] for table in COUNTED_TABLES}


def query(path: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(sql).fetchall()


@pytest.fixture(scope="module")
def first_run(sources: DemoSources) -> dict[str, int]:
    summary = elt()
    assert summary.ok, summary.error
    return counts(load_settings().duckdb_path)


def test_first_run_loads_raw_and_builds_marts(first_run: dict[str, int]) -> None:
    # GIVEN a fresh warehouse WHEN the flow runs THEN every raw and mart table has rows
    assert all(rows > 0 for rows in first_run.values()), first_run
    assert first_run["raw_shop.orders"] == N_ORDERS
    assert first_run["analytics_marts.fct_orders"] == N_ORDERS
    paid = query(
        load_settings().duckdb_path,
        "select count(*) from analytics_marts.fct_orders where payment_status = 'paid'",
    )[0][0]
    assert paid > N_ORDERS / 2


def test_status_shows_loads_contracts_and_slot_lag(first_run: dict[str, int]) -> None:
    # GIVEN the first run WHEN the on-call engineer asks for the status
    outcome = CliRunner().invoke(app, ["status", "--json"])
    assert outcome.exit_code == 0, outcome.output
    statuses = {entry["table"]: entry for entry in json.loads(outcome.output)}
    # THEN each raw table shows its rows, its contract verdict and, for CDC, the slot's lag
    orders = statuses["raw_shop.orders"]
    assert orders["rows"] == first_run["raw_shop.orders"]
    assert orders["contract"] == "passed"
    assert orders["slot_lag_bytes"] is not None and orders["slot_lag_bytes"] >= 0
    assert statuses["raw_stripe.charges"]["contract"] == "passed"
    assert statuses["raw_stripe.charges"]["slot_lag_bytes"] is None


def test_rerun_on_fresh_worker_loads_nothing(first_run: dict[str, int]) -> None:
    # GIVEN a worker whose local dlt folders are gone (state must come from the warehouse)
    settings = load_settings()
    shutil.rmtree(settings.pipelines_dir)
    # WHEN the flow runs over unchanged sources
    summary = elt()
    # THEN nothing is loaded and every table keeps its row count
    assert summary.rows_loaded == 0, summary.table_rows()
    assert counts(settings.duckdb_path) == first_run


def test_source_changes_load_exactly_the_changes(sources: DemoSources, first_run: dict[str, int]) -> None:
    # GIVEN new paid orders, updated customers, their Stripe charges, and deleted abandoned orders
    changes = change_the_sources(sources)
    # WHEN the flow runs
    summary = elt()
    # THEN exactly the changed rows are loaded (a delete is a row that removes its key)
    loaded = rows_loaded(summary)
    assert len(changes.deleted_orders) == 2
    assert loaded == expected_change_rows(changes)
    path = load_settings().duckdb_path
    after = counts(path)
    assert after["raw_shop.orders"] == first_run["raw_shop.orders"] + 4 - 2
    assert after["raw_shop.customers"] == first_run["raw_shop.customers"]  # merged, not appended
    # AND the marts reflect them: new orders paid, moved customers versioned, deletes gone
    assert_marts_show_the_changes(lambda sql: query(path, sql), changes)
    assert_moved_customers_versioned(lambda sql: query(path, sql), changes)
    updated_ids = ", ".join(map(str, changes.updated_customers))
    addresses = query(
        path,
        "select count(distinct street_address_hash) from analytics_marts.dim_customers"
        f" where customer_id in ({updated_ids}) group by customer_id",
    )
    assert addresses == [(2,)] * 3
    # AND no personal data is readable in any published mart
    text_columns = query(
        path,
        "select table_name, column_name from information_schema.columns"
        " where table_schema = 'analytics_marts' and data_type = 'VARCHAR'",
    )
    for table, column in text_columns:
        (clear,) = query(path, f"select count(*) from analytics_marts.{table} where {column} like '%@%'")[0]
        assert clear == 0, f"analytics_marts.{table}.{column} holds email addresses"


PUBLISHED_MARTS = [
    "dim_customers",
    "dim_products",
    "fct_engineering_lead_times",
    "fct_order_items",
    "fct_orders",
    "fct_payments",
    "fct_revenue_daily",
]


def published_marts(path: Path) -> dict[str, list[tuple]]:
    """Every published mart's rows, in a stable order: equal means unchanged, value for value."""
    return {
        table: query(path, f"select * from analytics_marts.{table} order by all") for table in PUBLISHED_MARTS
    }


def failed_checks(summary: object) -> set[str]:
    return {
        f"{contract.dataset}: {check.describe()}"
        for contract in summary.contracts  # type: ignore[attr-defined]
        for check in contract.failed_checks
    }


def test_bad_raw_rows_fail_at_their_contract_and_leave_published_marts_untouched(
    sources: DemoSources, first_run: dict[str, int]
) -> None:
    path = load_settings().duckdb_path
    before = published_marts(path)
    # GIVEN raw data with a duplicate charge, a negative refund and an order without customer
    with duckdb.connect(str(path)) as con:
        con.execute("insert into raw_stripe.charges select * from raw_stripe.charges limit 1")
        con.execute(
            "insert into raw_stripe.refunds select * replace ('re_bad' as id, -500 as amount)"
            " from raw_stripe.refunds limit 1"
        )
        con.execute(
            "update raw_shop.orders set customer_id = null where id = (select min(id) from raw_shop.orders)"
        )
    # WHEN the flow runs THEN it stops at the raw contracts, naming table, check and value
    with pytest.raises(EltRunFailed) as failure:
        elt(sources=["shop", "stripe"])
    assert failed_checks(failure.value.summary) == {
        "raw_stripe.charges: check 'duplicate id' failed (duplicate_count=1)",
        "raw_stripe.refunds: check 'invalid amount' failed (invalid_count=1)",
        "raw_shop.orders: check 'missing customer_id' failed (missing_count=1)",
    }
    assert failure.value.summary.dbt is None  # nothing was built from them
    assert published_marts(path) == before
    with duckdb.connect(str(path)) as con:
        con.execute(
            "update raw_shop.orders set customer_id = (select customer_id from analytics_marts.fct_orders"
            " where order_id = raw_shop.orders.id) where customer_id is null"
        )
        con.execute("delete from raw_stripe.refunds where id = 're_bad'")
        con.execute(
            "delete from raw_stripe.charges where rowid in (select max(rowid) from raw_stripe.charges"
            " group by id having count(*) > 1)"
        )


def test_a_mart_rule_broken_by_good_looking_rows_quarantines_and_publishes_nothing(
    sources: DemoSources, first_run: dict[str, int]
) -> None:
    path = load_settings().duckdb_path
    before = published_marts(path)
    # GIVEN a refund larger than its charge: every raw check passes, the order's figures can't
    (charge_id, amount) = query(
        path, "select id, amount from raw_stripe.charges where status = 'succeeded' and amount_refunded = 0"
    )[0]
    with duckdb.connect(str(path)) as con:
        con.execute(
            "insert into raw_stripe.refunds select * replace"
            f" ('re_too_big' as id, '{charge_id}' as charge, {amount * 2} as amount, 'succeeded' as status)"
            " from raw_stripe.refunds limit 1"
        )
    try:
        # WHEN the flow runs THEN the audited fct_orders fails its business rule
        with pytest.raises(EltRunFailed) as failure:
            elt(sources=["stripe"])
        assert failed_checks(failure.value.summary) == {
            "analytics_marts_audit.fct_orders: "
            "check 'failed_rows: refunds never exceed payments' failed (failed_rows_count=1)"
        }
        # AND the published marts are exactly what they were
        assert published_marts(path) == before
        # AND the failing build is kept for inspection
        kept = query(
            path,
            "select table_name from information_schema.tables"
            " where table_schema = 'analytics_marts_quarantine' and table_name like 'fct_orders__%'",
        )
        assert len(kept) == 1
        (bad,) = query(
            path,
            f"select count(*) from analytics_marts_quarantine.{kept[0][0]}"
            " where amount_refunded > amount_paid",
        )[0]
        assert bad == 1
    finally:
        with duckdb.connect(str(path)) as con:
            con.execute("delete from raw_stripe.refunds where id = 're_too_big'")


def test_unreachable_source_fails_with_one_line_and_touches_nothing(
    sources: DemoSources, first_run: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = load_settings().duckdb_path
    before = counts(path)
    # GIVEN the shop database URL points at a port nobody listens on, and no retries
    monkeypatch.setenv("SOURCES__SHOP__CREDENTIALS", "postgresql://elt_reader@127.0.0.1:9/shop")
    monkeypatch.setenv("ELT_INGEST_RETRIES", "0")
    # WHEN the flow runs through the CLI
    result = CliRunner().invoke(app, ["run", "--source", "shop"])
    # THEN it exits non-zero with one line naming the source and its setting
    assert result.exit_code == 1
    error_lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1, result.output
    assert "source shop" in error_lines[0]
    assert "sources.shop.credentials" in error_lines[0]
    # AND nothing already loaded changed
    assert counts(path) == before
    with pytest.raises(EltRunFailed):
        elt(sources=["shop"])
