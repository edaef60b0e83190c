"""Deterministic demo data: a shop's customers, products, orders and items, and the
Stripe customers, charges and refunds that pay for those orders.

Why one generator: the shop database and the Stripe stand-in must agree (each paid
order has a charge whose ``metadata.order_id`` names it), and a second demo run
must see exactly the same data so that it loads nothing new. Every timestamp is
derived from a seeded RNG and a fixed end of history (``ends_at``), never from the clock
while generating: the tests use the fixed default; ``elt demo`` picks "now" once, when it
seeds the shop, and keeps it (standins/shop_db.py), so a fresh demo's data is recent and
passes the contracts' freshness checks.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

EPOCH = datetime(2025, 1, 1, tzinfo=UTC)
SEED = 20250101
ORDER_SPACING = timedelta(seconds=30)
# With an end of history: however few orders, they spread over at least this long, so the
# oldest had time to be delivered, cancelled and refunded (every raw table gets rows).
SHORTEST_HISTORY = timedelta(days=14)
ORDERS_PER_CUSTOMER = 5  # one customer signs up for every five orders placed
# An order's status is reached this long after it was placed, per step along ORDER_STATUSES.
STATUS_STEP = timedelta(hours=12)
# With an end of history: the newest order is this old (young enough for the 48 h freshness
# checks, old enough that the newest orders had time to be paid).
NEWEST_ORDER_AGE = timedelta(hours=12)

FIRST_NAMES = ["ada", "alan", "grace", "linus", "margaret", "edsger", "barbara", "donald", "frances", "ken"]
LAST_NAMES = [
    "lovelace",
    "turing",
    "hopper",
    "torvalds",
    "hamilton",
    "dijkstra",
    "liskov",
    "knuth",
    "allen",
    "thompson",
]
COUNTRIES = ["US", "GB", "DE", "FR", "NL", "SE", "ES", "IT", "CA", "BR"]
STREETS = ["High Street", "Station Road", "Church Lane", "Mill Road", "Park Avenue", "Elm Street"]
CATEGORIES = ["books", "games", "garden", "kitchen", "music", "outdoor", "toys"]
ORDER_STATUSES = ["placed", "paid", "shipped", "delivered", "cancelled"]
ORDER_STATUS_WEIGHTS = [4, 10, 16, 65, 5]
ID_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


@dataclass
class ShopData:
    """Rows for the shop database (tuples in table column order) and Stripe objects, and
    the arguments they were generated from (kept with a seeded shop to generate it again)."""

    n_orders: int
    ends_at: datetime | None
    customers: list[tuple] = field(default_factory=list)
    products: list[tuple] = field(default_factory=list)
    orders: list[tuple] = field(default_factory=list)
    order_items: list[tuple] = field(default_factory=list)
    stripe_customers: list[dict] = field(default_factory=list)
    stripe_charges: list[dict] = field(default_factory=list)
    stripe_refunds: list[dict] = field(default_factory=list)


def stripe_id(prefix: str, rng: random.Random) -> str:
    """An id shaped like Stripe's (``ch_`` + 24 base62 characters)."""
    return prefix + "_" + "".join(rng.choices(ID_ALPHABET, k=24))


def street_address(customer_id: int) -> str:
    """A made-up street address; derived from the id, not the seeded generator, so adding
    it left every other generated value as it was."""
    return f"{customer_id * 7919 % 200 + 1} {STREETS[customer_id % len(STREETS)]}"


def unix(ts: datetime) -> int:
    return int(ts.timestamp())


def generate(n_orders: int = 100_000, seed: int = SEED, ends_at: datetime | None = None) -> ShopData:
    """Build the demo data set; the same arguments always give the same data.

    Without ``ends_at`` the history starts at ``EPOCH`` and every order has had time to
    reach its status. With it, the newest order is ``NEWEST_ORDER_AGE`` older than
    ``ends_at``, and an order too young for its status has not got there yet (nothing
    is dated after ``ends_at``).
    """
    rng = random.Random(seed)
    data = ShopData(n_orders, ends_at)
    n_customers = max(n_orders // ORDERS_PER_CUSTOMER, 1)
    n_products = 200
    spacing = ORDER_SPACING if ends_at is None else max(ORDER_SPACING, SHORTEST_HISTORY / n_orders)
    customer_spacing = spacing * ORDERS_PER_CUSTOMER
    epoch = EPOCH if ends_at is None else ends_at - NEWEST_ORDER_AGE - spacing * (n_orders + 1)

    stripe_customer_ids: list[str] = []
    for customer_id in range(1, n_customers + 1):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        # Sign-ups spread over the whole history, as the orders are.
        created = epoch + customer_spacing * customer_id + timedelta(seconds=rng.randrange(60))
        email = f"{first}.{last}.{customer_id}@example.com"
        data.customers.append(
            (
                customer_id,
                email,
                first.title(),
                last.title(),
                street_address(customer_id),
                rng.choice(COUNTRIES),
                created,
                created,
            )
        )
        cus_id = stripe_id("cus", rng)
        stripe_customer_ids.append(cus_id)
        data.stripe_customers.append(
            {
                "id": cus_id,
                "object": "customer",
                "created": unix(created) + 5,
                "email": email,
                "name": f"{first.title()} {last.title()}",
                "livemode": False,
                "metadata": {"shop_customer_id": str(customer_id)},
            }
        )

    prices: list[Decimal] = []
    for product_id in range(1, n_products + 1):
        price = Decimal(rng.randrange(199, 19999)) / 100
        prices.append(price)
        created = epoch - timedelta(days=30) + timedelta(minutes=product_id)
        category = rng.choice(CATEGORIES)
        data.products.append(
            (
                product_id,
                f"SKU-{product_id:05d}",
                f"{category.title()} item {product_id}",
                category,
                price,
                created,
                created,
            )
        )

    item_id = 0
    for order_id in range(1, n_orders + 1):
        ordered_at = epoch + spacing * order_id + timedelta(seconds=rng.randrange(30))
        # A customer who had signed up by then (the first orders go to the first customer).
        signed_up = max(1, min(n_customers, order_id // ORDERS_PER_CUSTOMER - 1))
        customer_id = rng.randrange(1, signed_up + 1)
        ordered_at = max(ordered_at, data.customers[customer_id - 1][6] + timedelta(minutes=1))
        status = rng.choices(ORDER_STATUSES, ORDER_STATUS_WEIGHTS)[0]
        if ends_at is not None:
            # its updated_at (status steps plus up to an hour) stays at or before ends_at
            steps_in_time = (ends_at - ordered_at - timedelta(hours=1)) // STATUS_STEP
            status = ORDER_STATUSES[max(min(ORDER_STATUSES.index(status), steps_in_time), 0)]
        updated_at = (
            ordered_at + STATUS_STEP * ORDER_STATUSES.index(status) + timedelta(seconds=rng.randrange(3600))
        )
        data.orders.append((order_id, customer_id, status, "usd", ordered_at, updated_at))

        total_cents = 0
        for _ in range(rng.randint(1, 4)):
            item_id += 1
            product_id = rng.randrange(1, n_products + 1)
            quantity = rng.randint(1, 3)
            unit_price = prices[product_id - 1]
            total_cents += int(unit_price * 100) * quantity
            data.order_items.append((item_id, order_id, product_id, quantity, unit_price, ordered_at))

        if status == "placed":
            continue  # awaiting payment: no charge yet
        charged_at = unix(ordered_at) + 30
        cus_id = stripe_customer_ids[customer_id - 1]
        if rng.random() < 0.03:  # a declined card before the successful attempt
            data.stripe_charges.append(
                charge_object(rng, order_id, cus_id, total_cents, charged_at - 10, "failed")
            )
        charge = charge_object(rng, order_id, cus_id, total_cents, charged_at, "succeeded")
        data.stripe_charges.append(charge)
        refund_cents = 0
        if status == "cancelled":
            refund_cents = total_cents
        elif status == "delivered" and rng.random() < 0.02:
            refund_cents = max(total_cents // 4, 1)
        if refund_cents:
            charge["amount_refunded"] = refund_cents
            charge["refunded"] = refund_cents == total_cents
            data.stripe_refunds.append(
                {
                    "id": stripe_id("re", rng),
                    "object": "refund",
                    "amount": refund_cents,
                    "charge": charge["id"],
                    "currency": "usd",
                    "created": charged_at + 86_400,
                    "status": "succeeded",
                    "reason": "requested_by_customer",
                }
            )
    return data


def charge_object(
    rng: random.Random, order_id: int, customer: str | None, amount: int, created: int, status: str
) -> dict:
    """A Stripe charge paying for one shop order (``metadata.order_id`` links them)."""
    return {
        "id": stripe_id("ch", rng),
        "object": "charge",
        "amount": amount,
        "amount_refunded": 0,
        "currency": "usd",
        "customer": customer,
        "created": created,
        "status": status,
        "paid": status == "succeeded",
        "refunded": False,
        "livemode": False,
        "metadata": {"order_id": str(order_id)},
        "description": f"Order #{order_id}",
    }
