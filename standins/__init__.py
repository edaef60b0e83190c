"""Local stand-ins for the demo's source systems, used by ``elt demo`` and the tests.

A real PostgreSQL "shop" database and a Stripe-compatible HTTP API on 127.0.0.1,
seeded with the same deterministic data set, started together and stopped
together. Nothing here is used when the platform runs against real sources.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from standins import dataset, shop_db
from standins.github_api import GitHubStore, demo_store, serve_github
from standins.postgres import PostgresServer, running_postgres
from standins.rest_api import TicketStore, serve_tickets
from standins.stripe_api import StripeStore, invoices_for_charges, serve_stripe

# A made-up test-mode key: the stand-in only accepts this one.
DEMO_STRIPE_KEY = "sk_test_elt_demo_0000000000000000"
# Token and size of the tickets API behind dlt_sources/rest/example_tickets.yml.
DEMO_TICKETS_TOKEN = "tickets_demo_token_0000"
DEMO_TICKETS = 2_000
# A made-up token accepted by the GitHub stand-in.
DEMO_GITHUB_TOKEN = "ghp_elt_demo_000000000000000000000000"


@dataclass(frozen=True)
class DemoSources:
    postgres: PostgresServer
    stripe: StripeStore
    stripe_url: str
    tickets: TicketStore
    tickets_url: str
    github: GitHubStore
    github_url: str
    shop_database: str = shop_db.DATABASE

    @property
    def shop_admin_dsn(self) -> str:
        return self.postgres.dsn(self.shop_database)

    def environment(self) -> dict[str, str]:
        """dlt settings that point the sources at the stand-ins."""
        return {
            "SOURCES__SHOP__CREDENTIALS": self.postgres.dsn(
                self.shop_database, user=shop_db.REPLICATION_ROLE
            ),
            "SOURCES__SHOP__PUBLICATION": shop_db.PUBLICATION,
            "SOURCES__STRIPE__BASE_URL": self.stripe_url,
            "SOURCES__STRIPE__API_KEY": DEMO_STRIPE_KEY,
            "SOURCES__EXAMPLE_TICKETS__BASE_URL": self.tickets_url,
            "SOURCES__EXAMPLE_TICKETS__TOKEN": DEMO_TICKETS_TOKEN,
            "SOURCES__GITHUB__BASE_URL": self.github_url,
            "SOURCES__GITHUB__ACCESS_TOKEN": DEMO_GITHUB_TOKEN,
            "SOURCES__GITHUB__REPOSITORIES": json.dumps(sorted(self.github.repos)),
        } | self._slot_setting()

    def _slot_setting(self) -> dict[str, str]:
        """On a server shared with others (the tests'), the shop's replication slot is named
        after its database: slots are cluster-wide, and two shops taking turns on ``elt_shop``
        would drop or resume each other's."""
        if self.shop_database == shop_db.DATABASE:
            return {}
        return {"SOURCES__SHOP__SLOT_NAME": f"elt_{self.shop_database}"}


def stripe_store_for(data: dataset.ShopData) -> StripeStore:
    """A Stripe account whose history is the data set and whose clock runs on from its end.

    Why not the wall clock: a restarted demo must serve the very same events (ids and
    times), or every ``elt demo`` would look like a new account and reload everything.
    The seeded events carry their objects' times and the stand-in's "now" starts an
    hour after the newest object, so Stripe's 30-day event window is the same each time.
    """
    objects = [*data.stripe_customers, *data.stripe_charges, *data.stripe_refunds]
    history_end = max((obj["created"] for obj in objects), default=0) + 3600
    started = time.time()
    store = StripeStore(clock=lambda: history_end + (time.time() - started))
    store.extend("customers", data.stripe_customers, history=True)
    store.extend("charges", data.stripe_charges, history=True)
    store.extend("refunds", data.stripe_refunds, history=True)
    store.extend("invoices", invoices_for_charges(data.stripe_charges), history=True)
    return store


def ticket_store_for(data: dataset.ShopData) -> TicketStore:
    """The demo's tickets; with a recent shop history they were updated in the hours before
    it ends (so they pass their 48 h freshness check as long as the shop does), else at the
    fixed ``T0``."""
    if data.ends_at is None:
        return TicketStore(DEMO_TICKETS)
    return TicketStore(DEMO_TICKETS, int((data.ends_at - timedelta(hours=2)).timestamp()))


@contextmanager
def demo_sources(
    state_dir: Path,
    n_orders: int = 100_000,
    durable: bool = True,
    postgres: PostgresServer | None = None,
    shop_database: str = shop_db.DATABASE,
    recent: bool = False,
) -> Iterator[DemoSources]:
    """Start the stand-ins; the shop database persists in ``state_dir`` between runs.

    Given a running ``postgres`` (the tests' shared server), the shop database is
    ``shop_database`` on it instead of ``shop`` on a server of its own. ``recent`` dates
    a newly seeded history to end now (the demo: no stale-data warnings); without it the
    history is the fixed one the tests know. A seeded shop keeps its history either way.
    """
    server: AbstractContextManager[PostgresServer] = (
        nullcontext(postgres) if postgres else running_postgres(state_dir / "shop-postgres", durable=durable)
    )
    with server as postgres:
        shop_db.create_database(postgres.dsn(), shop_database)
        shop_dsn = postgres.dsn(shop_database)
        seeded = shop_db.seeded_history(shop_dsn)
        if seeded is None:
            ends_at = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) if recent else None
            data = dataset.generate(n_orders, ends_at=ends_at)
            shop_db.seed(shop_dsn, data)
        else:
            seeded_orders, seeded_end = seeded
            data = dataset.generate(seeded_orders, ends_at=seeded_end)
        shop_db.enable_replication(shop_dsn)
        store = stripe_store_for(data)
        tickets = ticket_store_for(data)
        github = demo_store()
        with (
            serve_stripe(store, DEMO_STRIPE_KEY) as url,
            serve_tickets(tickets, DEMO_TICKETS_TOKEN) as tickets_url,
            serve_github(github, DEMO_GITHUB_TOKEN) as github_url,
        ):
            yield DemoSources(
                postgres=postgres,
                stripe=store,
                stripe_url=url,
                tickets=tickets,
                tickets_url=tickets_url,
                github=github,
                github_url=github_url,
                shop_database=shop_database,
            )
