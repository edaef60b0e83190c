"""Which shop tables are replicated, and where they hold people.

Each table is merged on its primary key, read from PostgreSQL.
"""

from __future__ import annotations

from dlt_sources.common.privacy import DELETE, REDACT, TablePrivacy, pii, subject

TABLES: tuple[str, ...] = ("customers", "products", "orders", "order_items")

PRIVACY: dict[str, TablePrivacy] = {
    "customers": TablePrivacy.from_hints(
        {
            "id": subject("shop_customer"),
            "email": pii("email", subject="email"),
            "first_name": pii("name"),
            "last_name": pii("name"),
            "street_address": pii("address"),
        },
        policy=DELETE,
    ),
    # an order is a sale the business must keep: erasing its customer keeps it, anonymous
    "orders": TablePrivacy.from_hints({"customer_id": subject("shop_customer")}, policy=REDACT),
}
"""The shop's personal data (``elt privacy map``); order items and products name nobody."""
