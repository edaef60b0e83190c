"""Build the real dbt project against a throw-away DuckDB file and check the marts.

The raw tables mimic what dlt writes (including ``_dlt_load_id`` / ``_dlt_id``)
and hold one order per payment outcome: paid, refunded, partially refunded and
unpaid. One test drives dbt directly through ``dbtRunner``; the other goes through
``flows.transform`` inside a Prefect flow to prove each dbt node becomes a task.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest

from flows.checks import CHECKS_DIR, contract_paths, verify_contracts
from flows.config import TRANSFORM_DIR, environment
from flows.dbt_nodes import RECORD_SETTING
from flows.transform import DbtBuildError, load_run_results, release_duckdb_connection
from tests.support.raw_tables import RAW_SQL

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def node_task_runs() -> Iterator[None]:
    """This module reads each dbt node's task run, which tests/conftest.py turns off elsewhere."""
    with environment({RECORD_SETTING: "true"}):
        yield


@pytest.fixture
def warehouse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dbt_workspace: Path) -> Iterator[Path]:
    """A DuckDB file with raw_shop / raw_stripe tables, wired into the dbt profile via env vars."""
    path = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute(RAW_SQL)
    monkeypatch.setenv("ELT_DUCKDB_PATH", str(path))
    yield path


def _rows(path: Path, sql: str) -> list[dict[str, Any]]:
    """Query the warehouse read-only and return dict rows."""
    with duckdb.connect(str(path), read_only=True) as con:
        cursor = con.execute(sql)
        columns = [d[0] for d in cursor.description]
        return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


def test_dbt_build_produces_expected_marts(warehouse: Path, dbt_workspace: Path) -> None:
    from dbt.cli.main import dbtRunner

    result = dbtRunner().invoke(
        [
            "build",
            "--project-dir",
            str(TRANSFORM_DIR),
            "--profiles-dir",
            str(TRANSFORM_DIR),
            "--target",
            "duckdb",
            # raw_github is not in this fixture; test_github_source builds those models
            "--exclude",
            "staging.github+",
            "--quiet",
        ]
    )
    release_duckdb_connection()

    summary = load_run_results(dbt_workspace / "run_results.json")
    assert result.success, summary.failure_message()
    assert summary.failed == ()
    assert summary.warned == ()
    assert "unit_test.elt.fct_orders.test_fct_orders_payment_status" in summary.built
    assert (
        "unit_test.elt.int_payments__by_order.test_int_payments__by_order_sums_succeeded_charges_and_refunds"
        in summary.built
    )

    orders = {
        row["order_id"]: row
        for row in _rows(warehouse, "select * from analytics_marts_audit.fct_orders order by order_id")
    }
    assert {k: v["payment_status"] for k, v in orders.items()} == {
        101: "paid",
        102: "refunded",
        103: "partially_refunded",
        104: "unpaid",
    }
    assert orders[101]["item_count"] == 3
    assert orders[101]["order_total"] == Decimal("45.50")
    assert orders[101]["amount_paid"] == Decimal("45.50")
    assert orders[102]["amount_refunded"] == Decimal("25.50")
    # the failed attempt and the failed refund are ignored
    assert (orders[103]["amount_paid"], orders[103]["amount_refunded"]) == (
        Decimal("30.00"),
        Decimal("10.00"),
    )
    assert (orders[104]["amount_paid"], orders[104]["amount_refunded"]) == (
        Decimal("0.00"),
        Decimal("0.00"),
    )
    assert orders[104]["currency"] == "USD"

    customers = {
        row["customer_id"]: row
        for row in _rows(
            warehouse,
            "select * from analytics_marts_audit.dim_customers order by customer_id",
        )
    }
    assert customers[1]["stripe_customer_id"] == "cus_A"
    assert customers[1]["country"] == "GB"
    assert customers[1]["order_count"] == 2
    assert customers[1]["lifetime_value"] == Decimal("45.50")
    assert customers[2]["lifetime_value"] == Decimal("20.00")
    assert customers[3]["stripe_customer_id"] is None
    assert (customers[3]["order_count"], customers[3]["lifetime_value"]) == (
        0,
        Decimal("0.00"),
    )
    assert customers[3]["first_order_at"] is None

    column_types = {
        row["column_name"]: row["data_type"]
        for row in _rows(
            warehouse,
            "select column_name, data_type from information_schema.columns"
            " where table_schema = 'analytics_marts_audit' and table_name = 'dim_customers'",
        )
    }
    assert column_types["lifetime_value"] == "DECIMAL(18,2)"

    # personal data: salted hashes in the mart, never the clear text
    assert customers[1]["email_hash"] == hashlib.sha256(b"test-saltada@example.com").hexdigest()
    assert customers[1]["name_hash"] == hashlib.sha256(b"test-saltada lovelace").hexdigest()
    assert customers[1]["street_address_hash"] == hashlib.sha256(b"test-salt12 st james sq").hexdigest()
    assert not {"email", "first_name", "last_name", "street_address"} & column_types.keys()

    # every mart contract holds on what dbt really built (the GitHub mart is not built here)
    results = verify_contracts(
        [path for path in contract_paths("marts") if path.stem != "fct_engineering_lead_times"],
        CHECKS_DIR / "datasources" / "duckdb.yml",
    )
    assert all(result.passed for result in results), [r.failure_message() for r in results]

    (ticket,) = _rows(warehouse, "select * from analytics_staging.stg_example_tickets__tickets")
    assert (ticket["requester_id"], ticket["ticket_status"], ticket["priority"]) == (42, "open", "high")
    (event,) = _rows(warehouse, "select * from analytics_staging.stg_stripe__events")
    assert (event["event_type"], event["object_id"]) == ("charge.refunded", "ch_102")

    charges = _rows(
        warehouse,
        "select * from analytics_staging.stg_stripe__charges where charge_id = 'ch_103b'",
    )
    assert charges[0]["order_id"] == 103
    assert charges[0]["amount"] == Decimal("30.00")
    assert charges[0]["created_at"].tzinfo is not None
    assert charges[0]["created_at"].timestamp() == 1707559500


@pytest.mark.usefixtures("prefect_harness")
def test_prefect_flow_runs_one_task_per_dbt_node(warehouse: Path) -> None:
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from flows.transform import dbt_build, run_dbt_build

    # models and unit tests only keep the Prefect run small; data tests ran above
    state = dbt_build(["--select", "+fct_orders", "--exclude", "resource_type:test"], return_state=True)
    summary = state.result()

    this_run = FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
    with get_client(sync_client=True) as client:
        task_run_names = sorted(run.name for run in client.read_task_runs(flow_run_filter=this_run))

    assert summary.success
    assert set(summary.built) == {
        "model.elt.stg_shop__orders",
        "model.elt.stg_shop__order_items",
        "model.elt.stg_stripe__charges",
        "model.elt.stg_stripe__refunds",
        "model.elt.int_payments__by_order",
        "model.elt.fct_orders",
        "unit_test.elt.fct_orders.test_fct_orders_payment_status",
        "unit_test.elt.int_payments__by_order.test_int_payments__by_order_sums_succeeded_charges_and_refunds",
    }
    assert all(node.execution_time > 0 for node in summary.nodes)
    # each node's task run is named "<resource type> <node name>" (flows/dbt_nodes.py)
    assert task_run_names == sorted(f"{node.resource_type} {node.name}" for node in summary.nodes)

    statuses = _rows(
        warehouse,
        "select payment_status from analytics_marts_audit.fct_orders order by order_id",
    )
    assert [r["payment_status"] for r in statuses] == [
        "paid",
        "refunded",
        "partially_refunded",
        "unpaid",
    ]

    # a duplicate order id must fail the build and name the failing test
    with duckdb.connect(str(warehouse)) as con:
        con.execute("insert into raw_shop.orders select * from raw_shop.orders where id = 104")
    with pytest.raises(DbtBuildError) as excinfo:
        run_dbt_build(["--select", "stg_shop__orders", "--indirect-selection", "cautious"])
    assert "test.elt.unique_stg_shop__orders_order_id" in str(excinfo.value)
    assert excinfo.value.summary.built[0] == "model.elt.stg_shop__orders"


@pytest.mark.usefixtures("prefect_harness")
def test_a_retried_build_rebuilds_only_what_failed_or_was_skipped(warehouse: Path) -> None:
    """The retry plans from the outcomes the failed attempt left in the warehouse, not from
    a file on the worker: a fresh worker's retry builds the same nodes."""
    from prefect import flow, get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.runtime import flow_run

    from flows.audit import LOADED, LoadRecord, record
    from flows.build import build_and_publish
    from flows.config import load_settings
    from flows.report import RunSummary

    attempts: list[RunSummary] = []
    with duckdb.connect(str(warehouse)) as con:
        con.execute("drop schema restricted cascade")  # the flow keeps its own salt there
        raw = con.execute(
            "select table_schema, table_name from information_schema.tables where table_schema like 'raw_%'"
        ).fetchall()
    # the raw tables as a load leaves them: with their rows in the loads audit
    now = datetime.now(UTC)
    loads = [LoadRecord("fixture", schema[4:], schema, table, 1, now, now, LOADED) for schema, table in raw]
    record(load_settings(), "loads", loads)

    @flow(retries=1, retry_delay_seconds=0)
    def build_twice() -> None:
        first = flow_run.run_count == 1
        with duckdb.connect(str(warehouse)) as con:
            # the first attempt finds stg_stripe__refunds' input broken, the retry finds it fixed
            con.execute(
                "alter table raw_stripe.refunds rename column reason to why"
                if first
                else "alter table raw_stripe.refunds rename column why to reason"
            )
        attempts.append(RunSummary(warehouse="duckdb"))
        build_and_publish(attempts[-1], load_settings())

    state = build_twice(return_state=True)
    assert state.is_completed(), state.message
    failed, retried = (summary.dbt for summary in attempts)
    assert failed is not None and retried is not None
    # the first attempt built everything it could read (raw_github and the tickets API are
    # not in this warehouse: their models wait) and failed at the broken model
    assert failed.failed == ("model.elt.stg_stripe__refunds",)
    assert "stg_github__issues waits for raw_github: never loaded" in attempts[0].build_plan
    # the marts dbt did build were checked; fct_order_items' contract, which reads the
    # fct_orders that was never built, failed closed
    rejected = {f"model.elt.{c.dataset.rsplit('.', 1)[-1]}" for c in attempts[0].contracts if not c.passed}
    assert rejected == {"model.elt.fct_order_items"}
    # the retry built the failed model, the ones skipped because of it and the rejected
    # mart, nothing else
    models = ("model.", "snapshot.")
    assert {uid for uid in retried.built if uid.startswith(models)} == rejected | {
        uid for uid in failed.failed + failed.skipped if uid.startswith(models)
    }
    this_run = FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
    with get_client(sync_client=True) as client:
        task_runs = client.read_task_runs(flow_run_filter=this_run)
    second_attempt = {run.name for run in task_runs if run.flow_run_run_count == 2}
    assert {"model stg_stripe__refunds", "model fct_orders"} <= second_attempt
    assert "model stg_shop__orders" not in second_attempt
