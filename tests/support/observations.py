"""What a run leaves behind about itself, checked the same way on every warehouse."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flows.report import RunSummary

Query = Callable[[str], list[tuple[Any, ...]]]


def assert_the_run_observed_itself(summary: RunSummary, query: Query) -> None:
    """The run profiled the tables it changed, judged their series and stored the column lineage
    of a mart in this warehouse, without a warning that any of it could not be done."""
    skipped = [w for w in summary.warnings if w.startswith(("anomaly checks skipped", "lineage:"))]
    assert not skipped, skipped
    profiled = {table for (table,) in query("select distinct table_name from elt_audit.profiles")}
    assert {"orders", "charges", "fct_orders", "fct_payments"} <= profiled, profiled
    (verdicts,) = query("select count(*) from elt_audit.anomalies")[0]
    assert verdicts > len(profiled)
    inputs = query(
        "select input_dataset from elt_audit.column_lineage"
        " where dataset like '%analytics_marts_audit.fct_payments' and column_name = 'amount'"
    )
    assert {dataset.rsplit(".", 1)[-1] for (dataset,) in inputs} == {
        "stg_stripe__charges",
        "stg_stripe__refunds",
    }, inputs
