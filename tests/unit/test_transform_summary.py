"""Summary parsing for flows/transform.py, checked against hand-written run_results.json content."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from flows.results import DbtBuildSummary, NodeResult
from flows.transform import DbtBuildError, load_run_results, summarize_run_results


def _result(unique_id: str, status: str, seconds: float, message: str | None = None) -> dict[str, Any]:
    """One entry shaped like dbt 1.11's run_results.json."""
    return {
        "unique_id": unique_id,
        "status": status,
        "execution_time": seconds,
        "message": message,
        "thread_id": "Thread-1",
        "adapter_response": {},
        "failures": None,
        "timing": [
            {
                "name": "compile",
                "started_at": "2025-01-01T00:00:00.000000Z",
                "completed_at": "2025-01-01T00:00:00.100000Z",
            },
            {
                "name": "execute",
                "started_at": "2025-01-01T00:00:00.100000Z",
                "completed_at": "2025-01-01T00:00:01.000000Z",
            },
        ],
    }


RUN_RESULTS: dict[str, Any] = {
    "metadata": {"dbt_version": "1.11.16", "invocation_id": "abc-123"},
    "elapsed_time": 4.25,
    "args": {"which": "build", "invocation_command": "pytest -q"},
    "results": [
        _result("model.elt.stg_shop__orders", "success", 0.4, "OK"),
        _result(
            "test.elt.unique_stg_shop__orders_order_id.1a2b",
            "fail",
            0.2,
            "Got 1 result, configured to fail if != 0",
        ),
        _result(
            "test.elt.relationships_stg_stripe__charges_order_id.3c4d",
            "warn",
            0.1,
            "Got 2 results",
        ),
        _result("unit_test.elt.fct_orders.test_fct_orders_payment_status", "pass", 1.5),
        _result("model.elt.fct_orders", "skipped", 0.0),
        _result(
            "model.elt.int_payments__by_order",
            "error",
            0.3,
            "Binder Error:\nno such column",
        ),
    ],
}


def test_summarize_run_results_sorts_nodes_into_outcomes() -> None:
    summary = summarize_run_results(RUN_RESULTS)

    assert summary.invocation_id == "abc-123"
    assert summary.command == "build"
    assert summary.elapsed_seconds == pytest.approx(4.25)
    assert summary.built == (
        "model.elt.stg_shop__orders",
        "test.elt.relationships_stg_stripe__charges_order_id.3c4d",
        "unit_test.elt.fct_orders.test_fct_orders_payment_status",
    )
    assert summary.warned == ("test.elt.relationships_stg_stripe__charges_order_id.3c4d",)
    assert summary.skipped == ("model.elt.fct_orders",)
    assert summary.failed == (
        "test.elt.unique_stg_shop__orders_order_id.1a2b",
        "model.elt.int_payments__by_order",
    )
    assert not summary.success
    assert summary.describe() == "dbt: 3 built, 1 skipped, 2 failed, 1 warned in 4.2s"


def test_node_timings_and_names_come_from_the_execute_phase() -> None:
    summary = summarize_run_results(RUN_RESULTS)

    slowest = summary.slowest(2)
    assert [n.name for n in slowest] == [
        "test_fct_orders_payment_status",
        "stg_shop__orders",
    ]
    assert slowest[0].resource_type == "unit_test"
    assert slowest[0].started_at == "2025-01-01T00:00:00.100000Z"
    assert slowest[0].completed_at == "2025-01-01T00:00:01.000000Z"


def test_failure_message_names_every_failed_node() -> None:
    error = DbtBuildError(summarize_run_results(RUN_RESULTS))

    text = str(error)
    assert text.startswith("dbt build failed: 2 node(s) failed")
    assert "test.elt.unique_stg_shop__orders_order_id.1a2b [fail] Got 1 result" in text
    # multi-line database errors are folded onto the node's line
    assert "model.elt.int_payments__by_order [error] Binder Error: no such column" in text
    assert "1 downstream node(s) skipped" in text
    assert error.summary.failed[1] == "model.elt.int_payments__by_order"


def test_empty_or_partial_run_results_do_not_crash() -> None:
    summary = summarize_run_results({"results": [{"unique_id": "model.elt.x", "status": "success"}]})

    assert summary == DbtBuildSummary(
        nodes=(NodeResult(unique_id="model.elt.x", status="success", execution_time=0.0),),
    )
    assert summarize_run_results({}).success


def test_load_run_results_reads_the_file_and_round_trips_to_json(
    tmp_path: Path,
) -> None:
    path = tmp_path / "run_results.json"
    path.write_text(json.dumps(RUN_RESULTS), encoding="utf-8")

    data = load_run_results(path).to_dict()

    assert data["failed"] == [
        "test.elt.unique_stg_shop__orders_order_id.1a2b",
        "model.elt.int_payments__by_order",
    ]
    assert data["success"] is False
    json.dumps(data)  # must stay JSON-serialisable for Prefect artifacts / logs


def test_run_report_lists_every_dbt_node_with_outcome_and_time() -> None:
    from flows.report import RunSummary

    report = RunSummary(warehouse="duckdb", dbt=summarize_run_results(RUN_RESULTS)).to_markdown()
    rows = [line for line in report.splitlines() if line.startswith("| ") and " | model | " in line]
    # failed first, then skipped, then built; each with its seconds
    assert rows == [
        "| int_payments__by_order | model | failed | 0.30 |",
        "| fct_orders | model | skipped | 0.00 |",
        "| stg_shop__orders | model | built | 0.40 |",
    ]
    assert "| relationships_stg_stripe__charges_order_id | test | built (warn) | 0.10 |" in report
    assert "| unique_stg_shop__orders_order_id | test | failed | 0.20 |" in report
