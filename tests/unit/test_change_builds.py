"""The logic of dev and CI builds that needs no warehouse: which manifest points where, a
model's primary key, a diff's share of changed rows and the verdict it gives."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from flows.data_diff import ModelDiff, markdown, primary_key
from flows.errors import ConfigError
from flows.slim_build import deferral_manifest, parse_age


def node(name: str, schema: str, **extra: Any) -> dict[str, Any]:
    return {
        "resource_type": "model",
        "name": name,
        "schema": schema,
        "relation_name": f'"warehouse"."{schema}"."{name}"',
        **extra,
    }


def test_deferral_points_marts_at_the_published_schema_and_leaves_the_rest() -> None:
    # GIVEN production's manifest: a mart in the audit schema, a staging view
    manifest = {
        "nodes": {
            "model.elt.fct_orders": node("fct_orders", "analytics_marts_audit"),
            "model.elt.stg_shop__orders": node("stg_shop__orders", "analytics_staging"),
        }
    }
    # WHEN it becomes the deferral target
    deferral = deferral_manifest(manifest)
    # THEN the mart resolves to what consumers read; staging as it was; the input untouched
    assert (
        deferral["nodes"]["model.elt.fct_orders"]["relation_name"]
        == '"warehouse"."analytics_marts"."fct_orders"'
    )
    assert deferral["nodes"]["model.elt.fct_orders"]["schema"] == "analytics_marts"
    assert deferral["nodes"]["model.elt.stg_shop__orders"] == manifest["nodes"]["model.elt.stg_shop__orders"]
    assert manifest["nodes"]["model.elt.fct_orders"]["schema"] == "analytics_marts_audit"


def test_primary_key_from_meta_then_unique_test_then_unique_combination() -> None:
    def test(name: str, model: str, **kwargs: Any) -> dict[str, Any]:
        return {
            "resource_type": "test",
            "attached_node": model,
            "test_metadata": {"name": name, "kwargs": kwargs},
        }

    manifest: dict[str, Any] = {
        "nodes": {
            "model.elt.a": node("a", "s", meta={"primary_key": ["x", "y"]}),
            "model.elt.b": node("b", "s"),
            "model.elt.c": node("c", "s"),
            "model.elt.d": node("d", "s"),
            "test.u": {**test("unique", "model.elt.b"), "column_name": "order_id"},
            "test.nn": {**test("not_null", "model.elt.b"), "column_name": "customer_id"},
            "test.uc": test("unique_combination", "model.elt.c", arguments={"columns": ["day", "currency"]}),
        }
    }
    assert primary_key(manifest, "model.elt.a") == ["x", "y"]
    assert primary_key(manifest, "model.elt.b") == ["order_id"]
    assert primary_key(manifest, "model.elt.c") == ["day", "currency"]
    assert primary_key(manifest, "model.elt.d") == []


def test_changed_share_counts_added_removed_and_changed_rows_against_production() -> None:
    diff = ModelDiff("fct_orders", ["order_id"], 200, 202, added=4, removed=2, changed=4)
    assert diff.changed_percent == pytest.approx(5.0)
    assert ModelDiff("new_mart", ["id"], None, 10).changed_percent == 0.0
    table = "\n".join(markdown([diff, ModelDiff("new_mart", ["id"], None, 10, note="new model")]))
    assert "| fct_orders | 200 → 202 | 4 | 2 | 4 |" in table
    assert "| new_mart | new → 10 | n/a | n/a | n/a |" in table


def test_ages_for_cleanup() -> None:
    assert parse_age("7d") == timedelta(days=7)
    assert parse_age("12h") == timedelta(hours=12)
    assert parse_age("0m") == timedelta(0)
    with pytest.raises(ConfigError, match="like 7d"):
        parse_age("seven days")
