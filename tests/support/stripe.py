"""A Stripe account for the tests: deterministic customers, charges, refunds and invoices,
a day of changes, and the figures (row counts, distinct ids, sums) that the stand-in and the
warehouse must agree on after every sync (the Stripe source, retry and freshness tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from standins.stripe_api import StripeStore
from tests.support.duckdb import query

API_KEY = "sk_test_integration_4242"
T0 = 1_700_000_000
NOW = T0 + 90 * 86_400  # the stand-in's clock: events are stamped with it
N_CUSTOMERS, N_CHARGES, N_REFUNDS, N_INVOICES = 120, 360, 40, 30
TABLES = ("customers", "charges", "refunds", "invoices")
SUMS = {
    "customers": (),
    "charges": ("amount", "amount_refunded"),
    "refunds": ("amount",),
    "invoices": ("amount_due", "amount_paid"),
}


class Clock:
    """The stand-in's wall clock, moved by the tests."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def tick(self, seconds: float = 1) -> None:
        self.now += seconds


def customer(i: int) -> dict[str, Any]:
    return {
        "id": f"cus_{i:06d}",
        "object": "customer",
        "created": T0 + i * 60,
        "email": f"customer{i}@example.com",
        "name": f"Customer {i}",
        "livemode": False,
        "metadata": {"shop_customer_id": str(i)},
    }


def charge(i: int, created: int | None = None) -> dict[str, Any]:
    failed = i % 17 == 0
    return {
        "id": f"ch_{i:06d}",
        "object": "charge",
        "amount": 500 + i * 3,
        "amount_refunded": 0,
        "currency": "usd",
        "customer": f"cus_{i % N_CUSTOMERS:06d}",
        # several charges per second: `created` ties exercise the boundary dedup
        "created": T0 + 10_000 + i // 4 if created is None else created,
        "status": "failed" if failed else "succeeded",
        "paid": not failed,
        "refunded": False,
        "livemode": False,
        "metadata": {"order_id": str(i)},
        "description": None,
    }


def refund(i: int) -> dict[str, Any]:
    return {
        "id": f"re_{i:06d}",
        "object": "refund",
        "amount": 100 + i,
        "charge": f"ch_{i * 7:06d}",
        "currency": "usd",
        "created": T0 + 20_000 + i // 2,
        "status": "succeeded",
        "reason": "requested_by_customer",
    }


def invoice(i: int, created: int | None = None) -> dict[str, Any]:
    return {
        "id": f"in_{i:06d}",
        "object": "invoice",
        "customer": f"cus_{i % N_CUSTOMERS:06d}",
        "number": f"INV-{i:04d}",
        "status": "open",
        "currency": "eur",
        "amount_due": 1_000 + i,
        "amount_paid": 0,
        "amount_remaining": 1_000 + i,
        "total": 1_000 + i,
        "created": T0 + 30_000 + i if created is None else created,
        "lines": {"object": "list", "data": [{"id": f"il_{i}", "amount": 1_000 + i}], "has_more": False},
        "metadata": {},
    }


def seed(store: StripeStore) -> StripeStore:
    store.extend("customers", [customer(i) for i in range(N_CUSTOMERS)])
    store.extend("charges", [charge(i) for i in range(N_CHARGES)])
    store.extend("refunds", [refund(i) for i in range(N_REFUNDS)])
    store.extend("invoices", [invoice(i) for i in range(N_INVOICES)])
    return store


def truth(store: StripeStore, tables: tuple[str, ...] = TABLES) -> dict[str, tuple[int, ...]]:
    """Row count, distinct ids and sums per table, as the stand-in holds them."""
    result = {}
    for table in tables:
        objs = [store.get(table, oid) for oid in store.ids(table)]
        sums = tuple(sum(o.get(col) or 0 for o in objs) for col in SUMS[table])
        result[table] = (len(objs), len(objs), *sums)
    return result


def warehouse(db_path: Path, tables: tuple[str, ...] = TABLES) -> dict[str, tuple[int, ...]]:
    """The same figures, from the raw tables."""
    result = {}
    for table in tables:
        sums = "".join(f", coalesce(sum({col}), 0)" for col in SUMS[table])
        result[table] = tuple(
            int(v)
            for v in query(db_path, f"select count(*), count(distinct id){sums} from raw_stripe.{table}")[0]
        )
    return result


def make_changes(store: StripeStore, clock: Clock) -> dict[str, int]:
    """A day of business: new objects, updates, a refund on an old charge, a deletion.

    Returns the rows each table must load (one row per changed object)."""
    clock.tick(3_600)
    max_created = max(charge(i)["created"] for i in range(N_CHARGES))
    # new charges, some sharing the previous max `created` second
    store.extend("charges", [charge(N_CHARGES + i, created=max_created + i // 5) for i in range(25)])
    store.update("customers", "cus_000005", email="new5@example.com")
    store.update("customers", "cus_000005", email="newer5@example.com")  # the last change wins
    store.refund_charge("ch_000003", 200, refund_id="re_new_1")  # an old charge, partly
    store.refund_charge("ch_000003", charge(3)["amount"] - 200, refund_id="re_new_2")  # then fully
    store.delete_customer("cus_000007")
    store.add("invoices", invoice(N_INVOICES, created=int(clock.now)))
    store.update("invoices", "in_000002", event_type="invoice.paid", status="paid", amount_paid=1_002)
    store.update("charges", "ch_000010", metadata={"order_id": "10", "note": "edited"})
    return {"charges": 25 + 2, "customers": 2, "refunds": 2, "invoices": 2}
