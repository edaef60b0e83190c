"""Local stand-ins for the demo's source systems, used by ``elt demo`` and the tests.

A real PostgreSQL "shop" database and a Stripe-compatible HTTP API on 127.0.0.1,
seeded with the same deterministic data set, started together and stopped
together. Nothing here is used when the platform runs against real sources.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from flows.demo import dataset, shop_db
from flows.demo.postgres import PostgresServer, running_postgres
from flows.demo.stripe_api import StripeStore, serve_stripe

# A made-up test-mode key: the stand-in only accepts this one.
DEMO_STRIPE_KEY = "sk_test_elt_demo_0000000000000000"


@dataclass(frozen=True)
class DemoSources:
    postgres: PostgresServer
    stripe: StripeStore
    stripe_url: str

    @property
    def shop_admin_dsn(self) -> str:
        return self.postgres.dsn(shop_db.DATABASE)

    def environment(self) -> dict[str, str]:
        """dlt settings that point the sources at the stand-ins."""
        return {
            "SOURCES__SHOP__CREDENTIALS": self.postgres.dsn(shop_db.DATABASE, user=shop_db.READER_ROLE),
            "SOURCES__STRIPE__BASE_URL": self.stripe_url,
            "SOURCES__STRIPE__API_KEY": DEMO_STRIPE_KEY,
        }


def stripe_store_for(data: dataset.ShopData) -> StripeStore:
    store = StripeStore()
    store.extend("customers", data.stripe_customers)
    store.extend("charges", data.stripe_charges)
    store.extend("refunds", data.stripe_refunds)
    return store


@contextmanager
def demo_sources(state_dir: Path, n_orders: int = 100_000, durable: bool = True) -> Iterator[DemoSources]:
    """Start both stand-ins; the shop database persists in ``state_dir`` between runs."""
    data = dataset.generate(n_orders)
    with running_postgres(state_dir / "shop-postgres", durable=durable) as postgres:
        shop_db.create_database(postgres.dsn())
        shop_dsn = postgres.dsn(shop_db.DATABASE)
        if not shop_db.is_seeded(shop_dsn):
            shop_db.seed(shop_dsn, data)
        store = stripe_store_for(data)
        with serve_stripe(store, DEMO_STRIPE_KEY) as url:
            yield DemoSources(postgres=postgres, stripe=store, stripe_url=url)


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of a block, then restore them."""
    previous = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
