"""What every end-to-end test of the demo checks, whatever the warehouse: the tables it
counts, and the source changes it makes with the rows they must load."""

from __future__ import annotations

from typing import Any

from flows.demo import DemoSources, shop_db

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
