"""What every end-to-end test of the demo checks, whatever the warehouse: the tables it
counts, and the source changes it makes with the rows they must load."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from standins import DemoSources, shop_db

RAW_TABLES = [
    "raw_shop.customers",
    "raw_shop.products",
    "raw_shop.orders",
    "raw_shop.order_items",
    "raw_stripe.customers",
    "raw_stripe.charges",
    "raw_stripe.refunds",
]
MART_TABLES = ["analytics_marts.dim_customers", "analytics_marts.fct_orders"]
COUNTED_TABLES = RAW_TABLES + MART_TABLES

# runs SQL on the warehouse under test and returns its rows
Query = Callable[[str], list[tuple[Any, ...]]]


def change_the_sources(sources: DemoSources) -> shop_db.Changes:
    """4 new paid orders (with their Stripe charges), 3 customers who moved, 2 abandoned orders deleted."""
    changes = shop_db.simulate_business(
        sources.shop_admin_dsn, n_new_orders=4, n_updated_customers=3, n_deleted_orders=2
    )
    sources.stripe.extend("charges", changes.new_charges)
    return changes


def rows_loaded(summary: Any) -> dict[str, int]:
    """``dataset.table -> rows`` of a run's loads."""
    return {f"{r.dataset}.{table}": rows for r in summary.ingests for table, rows in r.rows.items()}


def expected_change_rows(changes: shop_db.Changes) -> dict[str, int]:
    """Exactly what ``change_the_sources`` must load: a delete is a row that removes its key."""
    return {
        "raw_shop.orders": 4 + 2,
        "raw_shop.order_items": 4 + changes.deleted_items,
        "raw_shop.customers": 3,
        "raw_stripe.charges": 4,
        "raw_stripe.events": 4,  # charge.succeeded, one per new charge
    }


def assert_marts_show_the_changes(query: Query, changes: shop_db.Changes) -> None:
    """The published marts after ``change_the_sources``: the new orders paid, the deleted ones
    gone from raw and marts alike (``query`` runs SQL on the warehouse under test)."""
    new_ids = ", ".join(map(str, changes.new_orders))
    statuses = query(f"select payment_status from analytics_marts.fct_orders where order_id in ({new_ids})")
    assert sorted(s for (s,) in statuses) == ["paid"] * 4
    deleted_ids = ", ".join(map(str, changes.deleted_orders))
    for table, key in [("raw_shop.orders", "id"), ("analytics_marts.fct_orders", "order_id")]:
        assert query(f"select count(*) from {table} where {key} in ({deleted_ids})") == [(0,)]


def assert_moved_customers_versioned(query: Query, changes: shop_db.Changes) -> None:
    """Each customer who moved has a new current version in dim_customers (SCD2) and keeps the old one."""
    updated_ids = ", ".join(map(str, changes.updated_customers))
    versions = query(
        "select customer_id, count(*), max(case when is_current then country end)"
        f" from analytics_marts.dim_customers where customer_id in ({updated_ids}) group by customer_id"
    )
    assert sorted((n, country) for (_, n, country) in versions) == [(2, "NZ")] * 3
