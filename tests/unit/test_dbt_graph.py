"""Planning a build on the dbt graph: what changed decides what is built, and what waits."""

from __future__ import annotations

from typing import Any

import pytest

from flows.dbt_graph import Changes, DbtGraph, SourceTable, plan_build

SHOP_ORDERS = SourceTable("raw_shop", "orders")
STRIPE_CHARGES = SourceTable("raw_stripe", "charges")
STRIPE_REFUNDS = SourceTable("raw_stripe", "refunds")
ALL_TABLES = frozenset({SHOP_ORDERS, STRIPE_CHARGES, STRIPE_REFUNDS})


def _model(name: str, folder: str, parents: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "resource_type": "model",
        "name": name,
        "fqn": ["elt", folder, name],
        "depends_on": {"nodes": parents},
        "config": {"materialized": "table" if folder == "marts" else "view"},
        "tags": extra.get("tags", []),
    }


def _test(name: str, parents: list[str]) -> dict[str, Any]:
    return {"resource_type": "test", "name": name, "fqn": ["elt", name], "depends_on": {"nodes": parents}}


def _source(schema: str, table: str) -> dict[str, Any]:
    return {"schema": schema, "name": table, "identifier": table}


MANIFEST = {
    "sources": {
        "source.elt.raw_shop.orders": _source("raw_shop", "orders"),
        "source.elt.raw_stripe.charges": _source("raw_stripe", "charges"),
        "source.elt.raw_stripe.refunds": _source("raw_stripe", "refunds"),
    },
    "nodes": {
        "model.elt.stg_orders": _model("stg_orders", "staging", ["source.elt.raw_shop.orders"]),
        "model.elt.stg_charges": _model("stg_charges", "staging", ["source.elt.raw_stripe.charges"]),
        "model.elt.stg_refunds": _model("stg_refunds", "staging", ["source.elt.raw_stripe.refunds"]),
        "model.elt.fct_orders": _model(
            "fct_orders", "marts", ["model.elt.stg_orders", "model.elt.stg_charges"]
        ),
        "model.elt.fct_refunds": _model("fct_refunds", "marts", ["model.elt.stg_refunds"]),
        "model.elt.fct_today": _model("fct_today", "marts", ["model.elt.stg_orders"], tags=["clock"]),
        "test.elt.unique_fct_orders_id": _test("unique_fct_orders_id", ["model.elt.fct_orders"]),
        "test.elt.charge_has_order": _test(
            "charge_has_order", ["model.elt.stg_charges", "model.elt.stg_orders"]
        ),
    },
}
GRAPH = DbtGraph.from_manifest(MANIFEST)


def names(unique_ids: frozenset[str] | set[str]) -> list[str]:
    return sorted(uid.rsplit(".", 1)[-1] for uid in unique_ids)


def plan(**changes: Any) -> Any:
    scope = changes.pop("scope", None)
    full_build = changes.pop("full_build", False)
    defaults: dict[str, Any] = {"modified": frozenset(), "existing": ALL_TABLES}
    return plan_build(GRAPH, Changes(**(defaults | changes)), scope=scope, full_build=full_build)


def test_new_rows_build_what_their_table_feeds_and_the_clock_models() -> None:
    drawn = plan(loaded=frozenset({STRIPE_CHARGES}))
    assert names(drawn.selected) == ["fct_orders", "fct_today", "stg_charges"]
    assert drawn.reasons == {"fed by new rows": 1, "changed code": 0, "pending": 0, "reading the clock": 1}


def test_nothing_changed_builds_nothing_but_the_clock_models() -> None:
    assert names(plan().selected) == ["fct_today"]
    unclocked = DbtGraph.from_manifest(
        {**MANIFEST, "nodes": {k: v for k, v in MANIFEST["nodes"].items() if "today" not in k}}
    )
    drawn = plan_build(unclocked, Changes(modified=frozenset(), existing=ALL_TABLES))
    assert drawn.empty
    assert drawn.describe(unclocked) == "dbt: nothing changed, 0 of 5 models built"


def test_changed_code_and_pending_nodes_build_with_everything_downstream() -> None:
    assert names(plan(modified=frozenset({"model.elt.stg_orders"})).selected) == [
        "fct_orders",
        "fct_today",
        "stg_orders",
    ]
    # a changed source definition counts for every node reading it
    assert "stg_refunds" in names(plan(modified=frozenset({"source.elt.raw_stripe.refunds"})).selected)
    # a node that failed or was skipped last time, and a test that failed, are built again
    drawn = plan(pending=frozenset({"model.elt.stg_refunds", "test.elt.charge_has_order"}))
    assert names(drawn.selected) == ["charge_has_order", "fct_refunds", "fct_today", "stg_refunds"]
    assert drawn.selectors(GRAPH)[0] == "fqn:elt.charge_has_order"


@pytest.mark.parametrize("modified", [None, frozenset()], ids=["first build", "full build"])
def test_without_an_earlier_build_or_with_full_build_everything_is_built(modified: Any) -> None:
    drawn = plan(modified=modified, full_build=modified is not None)
    assert len(names(drawn.selected)) == 8
    assert drawn.describe(GRAPH) == (
        "dbt: 6 of 6 models to build (full build)"
        if modified is not None
        else "dbt: 6 of 6 models to build (6 without an earlier build)"
    )


def test_a_source_scope_builds_only_what_its_tables_feed() -> None:
    # refunds and orders both got rows, but the run is about Stripe
    drawn = plan(loaded=frozenset({STRIPE_REFUNDS, SHOP_ORDERS}), scope=["raw_stripe"])
    assert names(drawn.selected) == ["fct_refunds", "stg_refunds"]
    # a Stripe run reaches the marts that also read the shop, when their inputs changed
    drawn = plan(loaded=frozenset({STRIPE_CHARGES}), scope=["raw_stripe"])
    assert names(drawn.selected) == ["fct_orders", "stg_charges"]


def test_nodes_reading_a_never_loaded_table_wait_and_say_for_what() -> None:
    drawn = plan(
        modified=None,
        existing=frozenset({STRIPE_CHARGES, STRIPE_REFUNDS}),
        pending=frozenset({"test.elt.charge_has_order"}),
    )
    assert names(drawn.selected) == ["fct_refunds", "stg_charges", "stg_refunds"]
    assert drawn.waiting_lines(GRAPH) == [
        "fct_orders waits for raw_shop: never loaded",
        "fct_today waits for raw_shop: never loaded",
        "stg_orders waits for raw_shop: never loaded",
    ]


def test_marts_are_the_table_models_under_marts() -> None:
    assert [node.name for node in GRAPH.marts(GRAPH.nodes)] == ["fct_orders", "fct_refunds", "fct_today"]
