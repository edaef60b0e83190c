"""A person to forget, spread over every place a person can be, and the scan that looks for them.

The person's identifiers are chosen so that finding one anywhere is a real finding: an
email, a Stripe id and a shop id (a number no generated row uses) that appear nowhere else.
The scan reads every value of every table as text, not through the PII map, so a place the
map forgets is found too.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg2

from standins import DemoSources
from standins.dataset import charge_object


@dataclass(frozen=True)
class Person:
    email: str = "Forget.Me.Please@example.com"
    shop_id: int = 987_654_321
    stripe_id: str = "cus_privacyForgetMe0001"

    @property
    def order_ids(self) -> tuple[int, int]:
        """Two orders, numbered near the customer id but never containing it."""
        base = self.shop_id // 1000 * 1000
        return base + 1, base + 2

    @property
    def subject(self) -> str:
        """How ``elt privacy forget`` is asked: the email, as a person would type it."""
        return f"email:{self.email}"

    def needles(self, *hashes: str) -> list[str]:
        """What must be nowhere after the erasure (lower-case; the shop id as JSON and as a value)."""
        return [
            self.email.lower(),
            self.stripe_id.lower(),
            f'"shop_customer_id":"{self.shop_id}"',
            str(self.shop_id),
            *(value.lower() for value in hashes),
        ]


def add_person(sources: DemoSources, person: Person = Person()) -> Person:
    """The person as a shop customer with two orders (one with a line), and as a Stripe
    customer linked to it whose charge paid one order."""
    now = datetime.now(UTC)
    with psycopg2.connect(sources.shop_admin_dsn) as conn, conn.cursor() as cur:
        cur.execute(
            "insert into customers values (%s, %s, 'Forget', 'Me', '1 Erasure Lane', 'DE', %s, %s)",
            (person.shop_id, person.email, now - timedelta(days=30), now),
        )
        for order_id in person.order_ids:
            cur.execute(
                "insert into orders values (%s, %s, 'paid', 'USD', %s, %s)",
                (order_id, person.shop_id, now - timedelta(days=2), now),
            )
        cur.execute("select id, price from products order by id limit 1")
        product, price = cur.fetchone()
        cur.execute(
            "insert into order_items values (%s, %s, %s, 2, %s, %s)",
            (person.order_ids[0], person.order_ids[0], product, price, now),
        )
    conn.close()
    created = int(time.time())
    sources.stripe.add(
        "customers",
        {
            "id": person.stripe_id,
            "object": "customer",
            "created": created,
            "email": person.email,
            "name": "Forget Me",
            "livemode": False,
            "metadata": {"shop_customer_id": str(person.shop_id)},
        },
    )
    charge = charge_object(
        random.Random(person.shop_id),
        person.order_ids[0],
        person.stripe_id,
        int(price * 200),
        created,
        "succeeded",
    )
    sources.stripe.add("charges", charge)
    return person


def move_person(sources: DemoSources, person: Person, street: str) -> None:
    """A new address: a new version in the snapshot at the next run."""
    with psycopg2.connect(sources.shop_admin_dsn) as conn, conn.cursor() as cur:
        cur.execute(
            "update customers set street_address = %s, updated_at = now() where id = %s",
            (street, person.shop_id),
        )
    conn.close()


def add_rejected_charge(sources: DemoSources, person: Person) -> None:
    """A charge of the person with an amount beyond 64 bits: quarantined into
    ``raw_stripe._rejected_records``, the record kept as JSON text."""
    charge = charge_object(
        random.Random(person.shop_id + 1),
        person.order_ids[1],
        person.stripe_id,
        2**63,
        int(time.time()),
        "failed",
    )
    sources.stripe.add("charges", charge)


def found(texts: Iterable[tuple[str, str]], needles: Iterable[str]) -> list[tuple[str, str]]:
    """``(where, needle)`` for each needle in a text (case-insensitive)."""
    wanted = list(needles)
    return [(where, needle) for where, text in texts for needle in wanted if needle in text.lower()]
