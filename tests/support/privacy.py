"""A person to forget, spread over every place a person can be, and the scan that looks for them.

The person's identifiers are chosen so that finding one anywhere is a real finding: an
email, a Stripe id and a shop id (a number no generated row uses) that appear nowhere else.
The scan reads every value of every table as text, not through the PII map, so a place the
map forgets is found too.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg2
from typer.testing import CliRunner

from flows.cli import app
from flows.config import environment
from flows.report import RunSummary
from flows.transform import run_dbt_operation
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


# when the person signed up: fixed, so that every warehouse's first run builds the same marts
SIGNED_UP = datetime(2026, 11, 1, 12, tzinfo=UTC)


def add_person(sources: DemoSources, person: Person = Person()) -> Person:
    """The person as a shop customer with two orders (one with a line), and as a Stripe
    customer linked to it whose charge paid one order."""
    now = SIGNED_UP
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
    created = int(SIGNED_UP.timestamp())
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
        int(SIGNED_UP.timestamp()),
        "failed",
    )
    sources.stripe.add("charges", charge)


def found(texts: Iterable[tuple[str, str]], needles: Iterable[str]) -> list[tuple[str, str]]:
    """``(where, needle)`` for each needle in a text (case-insensitive)."""
    wanted = list(needles)
    return [(where, needle) for where, text in texts for needle in wanted if needle in text.lower()]


Query = Callable[[str], list[tuple[Any, ...]]]
Run = Callable[[list[str]], RunSummary]

# every place the scenario puts the person, on any warehouse
HOLDING = frozenset(
    {
        "raw_shop.customers",
        "raw_shop.orders",
        "raw_stripe.customers",
        "raw_stripe.charges",
        "raw_stripe.events",
        "raw_stripe._rejected_records",
        "analytics_snapshots.snap_shop__customers",
        "analytics_marts.dim_customers",
        "analytics_marts.fct_orders",
        "analytics_marts.fct_payments",
        "analytics_marts_audit.dim_customers",
        "analytics_marts_quarantine.dim_customers__privacy",
        "analytics_marts_quarantine.fct_orders__privacy",
    }
)


def seed_person(sources: DemoSources, person: Person = Person()) -> Person:
    """The person in the sources before a first run, with a charge that will be rejected."""
    add_person(sources, person)
    add_rejected_charge(sources, person)
    return person


def load_three_versions(sources: DemoSources, person: Person, run: Run) -> None:
    """The person loaded three times (three snapshot versions), with a rejected charge."""
    run(["shop", "stripe"])
    move_person(sources, person, "2 Erasure Lane")
    run(["shop"])
    move_person(sources, person, "3 Erasure Lane")
    add_rejected_charge(sources, person)
    run(["shop", "stripe"])


def quarantine_marts() -> None:
    """Copies of the marts holding the person, as a failed contract leaves them."""
    run_dbt_operation("quarantine_marts", {"tables": ["dim_customers", "fct_orders"], "run_id": "privacy"})


def forget(person: Person) -> str:
    """``elt privacy forget`` through the CLI, asked for by email as someone typed it; its output."""
    result = CliRunner().invoke(app, ["privacy", "forget", "--subject", person.subject])
    assert result.exit_code == 0, result.output
    assert "3 identifiers (1 email, 1 shop_customer, 1 stripe_customer)" in result.output
    assert "published 4 erased marts after their contracts passed" in result.output, result.output
    return result.output


def last_proof(query: Query) -> dict[str, tuple[str, int, int, str]]:
    """The latest erasure's proof: table → (action, person's rows before, after, subject hash)."""
    rows = query(
        "select request_id, finished_at, place, action, subject_rows_before, subject_rows_after, subject_hash"
        " from elt_audit.erasures"
    )
    latest = max(rows, key=lambda row: row[1])[0]
    return {
        place.lower(): (action, int(before), int(after), subject)
        for request, _, place, action, before, after, subject in rows
        if request == latest
    }


def assert_proof(proof: dict[str, tuple[str, int, int, str]], holding: set[str], versions: int) -> None:
    """Every table that held the person was erased, to 0, and named in the proof; the person
    only as a keyed hash. ``versions``: their rows in the snapshot."""
    assert proof["raw_shop.customers"][:3] == ("deleted", 1, 0)
    assert proof["raw_shop.orders"][:3] == ("redacted", 2, 0)
    assert proof["analytics_snapshots.snap_shop__customers"][:3] == ("deleted", versions, 0)
    assert proof["raw_stripe._rejected_records"][:3] == ("deleted", 1, 0)
    assert proof["analytics_marts.dim_customers"][:3] == ("deleted", versions, 0)
    assert {place for place, (action, *_) in proof.items() if action != "nothing held"} == holding
    assert all(after == 0 for _, _, after, _ in proof.values())
    assert {len(subject) for *_, subject in proof.values()} == {64}


def reload_everything(query: Query, pipelines_dir: Path, run: Run) -> None:
    """One run that re-snapshots the shop (CDC) and reads Stripe again from the start (its
    state lost, as on a new installation): each source counts the rows it kept out."""
    query("delete from raw_stripe._dlt_pipeline_state")
    shutil.rmtree(pipelines_dir / "elt_stripe")
    with environment({"SOURCES__SHOP__RESNAPSHOT": "true"}):
        summary = run(["stripe", "shop"])
    erased = {result.source: result.erased for result in summary.ingests}
    assert erased["shop"] == {"customers": 1, "orders": 2}
    assert erased["stripe"] == {
        "customers": 1,
        "charges": 1,
        "_rejected_records": 1,
        "events": erased["stripe"].get("events", 0),
    }
    assert erased["stripe"]["events"] > 0
    notes = [note for result in summary.ingests for note in result.notes]
    assert "3 rows of forgotten people kept out (customers 1, orders 2)" in notes


def table_texts(query: Query, tables: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Every value of each table as text: ``(schema.table in lower case, text)`` for each
    ``(schema.table, the table as the warehouse's SQL names it)``."""
    texts = []
    for name, qualified in tables:
        values = [
            str(value) for row in query(f"select * from {qualified}") for value in row if value is not None
        ]
        texts.append((name.lower(), "\n".join(values)))
    return texts


def assert_erased_and_kept_out(
    run: Run, query: Query, texts: Callable[[], list[tuple[str, str]]], pipelines_dir: Path
) -> None:
    """On a cloud warehouse, the person the first run loaded (tests/support/first_runs.py):
    in every place, then forgotten, proven, revenue unchanged, and a re-snapshot and a full
    Stripe re-read that keep them out."""
    person = Person()
    quarantine_marts()
    (hashed,) = query(
        f"select email_hash from analytics_marts.dim_customers where customer_id = {person.shop_id}"
    )[0]
    needles = person.needles(hashed)
    holding = {where for where, _ in found(texts(), needles)}
    assert holding >= HOLDING, holding
    revenue = sorted(query("select * from analytics_marts.fct_revenue_daily"), key=repr)
    forget(person)
    assert found(texts(), needles) == []
    assert sorted(query("select * from analytics_marts.fct_revenue_daily"), key=repr) == revenue
    assert_proof(last_proof(query), holding, versions=1)
    reload_everything(query, pipelines_dir, run)
    assert found(texts(), needles) == []
