"""Which shop tables are replicated. Each is merged on its primary key, read from PostgreSQL."""

TABLES: tuple[str, ...] = ("customers", "products", "orders", "order_items")
