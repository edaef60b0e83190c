"""The demo's tables that every end-to-end test counts, whatever the warehouse."""

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
