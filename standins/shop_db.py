"""The demo "shop" database: schema, seeding and a simulated day of business.

Why here: the demo and the tests both need the same operational database; the
ELT platform itself only ever reads it through ``dlt_sources/shop``.
"""

from __future__ import annotations

import csv
import io
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg2

from dlt_sources.postgres_cdc import catalog
from dlt_sources.shop.settings import TABLES as REPLICATED_TABLES
from standins.dataset import ShopData, charge_object, unix

DATABASE = "shop"
READER_ROLE = "elt_reader"
# The least-privilege role the shop source replicates with: LOGIN REPLICATION, SELECT on
# the published tables, no ownership (the publication is the admin's, see enable_replication).
REPLICATION_ROLE = "elt_cdc"
PUBLICATION = "elt_shop"

SCHEMA_SQL = """
create table customers (
    id bigint primary key,
    email text not null,
    first_name text not null,
    last_name text not null,
    street_address text not null,
    country char(2) not null,
    created_at timestamptz not null,
    updated_at timestamptz not null
);
create table products (
    id bigint primary key,
    sku text not null unique,
    name text not null,
    category text not null,
    price numeric(12, 2) not null,
    created_at timestamptz not null,
    updated_at timestamptz not null
);
create table orders (
    id bigint primary key,
    customer_id bigint not null references customers (id),
    status text not null,
    currency char(3) not null,
    ordered_at timestamptz not null,
    updated_at timestamptz not null
);
create table order_items (
    id bigint primary key,
    order_id bigint not null references orders (id),
    product_id bigint not null references products (id),
    quantity integer not null,
    unit_price numeric(12, 2) not null,
    updated_at timestamptz not null
);
create index orders_updated_at on orders (updated_at);
create index order_items_updated_at on order_items (updated_at);
create index customers_updated_at on customers (updated_at);
create index products_updated_at on products (updated_at);
"""

TABLES = ("customers", "products", "orders", "order_items")


def create_database(admin_dsn: str, name: str = DATABASE) -> None:
    """Create the shop database (``name``: another one for a test sharing the server), a
    read-only role and the replication role, if missing."""
    conn = psycopg2.connect(admin_dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("select 1 from pg_database where datname = %s", (name,))
        if cur.fetchone() is None:
            cur.execute(f"create database {name}")
        for role, attributes in ((READER_ROLE, "login"), (REPLICATION_ROLE, "login replication")):
            cur.execute("select 1 from pg_roles where rolname = %s", (role,))
            if cur.fetchone() is None:
                cur.execute(f"create role {role} {attributes}")
    conn.close()


def enable_replication(admin_dsn: str) -> None:
    """The admin's one-time CDC set-up: the publication over the shop tables and SELECT for
    the replication role (what ``elt cdc setup shop`` does on a real database)."""
    conn = psycopg2.connect(admin_dsn)
    try:
        tables = catalog.describe_tables(conn, "shop", "public", REPLICATED_TABLES)
        catalog.setup_publication(conn, PUBLICATION, tables, REPLICATION_ROLE)
    finally:
        conn.close()


def seeded_history(dsn: str) -> tuple[int, datetime | None] | None:
    """The ``(n_orders, ends_at)`` the shop was seeded from, None when it is empty.

    Why kept in the database: the Stripe and tickets stand-ins regenerate their half on
    every start and must agree with the shop, which a demo seeded on another day (its
    ``ends_at``) or with another ``--orders`` would not.
    """
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(
            "select to_regclass('public.orders') is not null, to_regclass('standin.history') is not null"
        )
        has_orders, has_history = cur.fetchone()
        if not has_orders:
            return None
        if not has_history:
            raise RuntimeError(
                "the demo shop database was seeded by an older version of the stand-ins;"
                " delete data/demo/ and the demo warehouse (data/*.duckdb) and run again"
            )
        cur.execute("select n_orders, ends_at from standin.history")
        n_orders, ends_at = cur.fetchone()
    conn.close()
    return n_orders, ends_at


def seed(dsn: str, data: ShopData) -> None:
    """Create the tables, bulk-load the generated rows with COPY, and record what they were
    generated from in ``standin.history`` (a schema no source reads)."""
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(SCHEMA_SQL)
        for table in TABLES:
            _copy(cur, table, getattr(data, table))
        cur.execute("create schema standin")
        cur.execute("create table standin.history (n_orders integer, ends_at timestamptz)")
        cur.execute("insert into standin.history values (%s, %s)", (data.n_orders, data.ends_at))
        cur.execute(f"grant usage on schema public to {READER_ROLE}")
        cur.execute(f"grant select on all tables in schema public to {READER_ROLE}")
        cur.execute("analyze")
    conn.close()


def _copy(cur: psycopg2.extensions.cursor, table: str, rows: Iterable[Sequence]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for row in rows:
        writer.writerow(v.isoformat() if hasattr(v, "isoformat") else v for v in row)
    buffer.seek(0)
    cur.copy_expert(f"copy {table} from stdin with (format csv)", buffer)


@dataclass(frozen=True)
class Changes:
    """What ``simulate_business`` changed, so a test can assert the next load matches it."""

    new_orders: list[int]
    updated_customers: list[int]
    new_charges: list[dict]
    deleted_orders: list[int]
    deleted_items: int


def simulate_business(
    dsn: str,
    n_new_orders: int = 5,
    n_updated_customers: int = 3,
    n_deleted_orders: int = 2,
    seed: int = 7,
) -> Changes:
    """Insert new paid orders (with items), update some customers, delete abandoned
    (never paid, so never charged) orders with their items, and return Stripe charges
    matching the new orders for the caller to add to the Stripe stand-in."""
    rng = random.Random(seed)
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(
            "select (select max(id) from orders), (select max(id) from order_items),"
            " greatest((select max(updated_at) from orders), (select max(updated_at) from customers))"
        )
        max_order, max_item, latest = cur.fetchone()
        cur.execute("select id from customers order by id limit 50")
        customer_ids = [row[0] for row in cur.fetchall()]
        cur.execute("select id, price from products order by id limit 20")
        products = cur.fetchall()
        now = latest + timedelta(hours=1)
        new_orders, charges = [], []
        for offset in range(1, n_new_orders + 1):
            order_id, customer_id = max_order + offset, rng.choice(customer_ids)
            cur.execute(
                "insert into orders values (%s, %s, 'paid', 'usd', %s, %s)",
                (order_id, customer_id, now, now),
            )
            product_id, price = rng.choice(products)
            max_item += 1
            cur.execute(
                "insert into order_items values (%s, %s, %s, 2, %s, %s)",
                (max_item, order_id, product_id, price, now),
            )
            new_orders.append(order_id)
            charges.append(
                charge_object(rng, order_id, None, int(price * 100) * 2, unix(now) + 30, "succeeded")
            )
        updated = rng.sample(customer_ids, n_updated_customers)
        cur.execute(
            # a customer who moves: a new address and country (a new SCD2 version in dim_customers)
            "update customers set street_address = '1 Queen Street', country = 'NZ', updated_at = %s"
            " where id = any(%s)",
            (now, updated),
        )
        cur.execute("select id from orders where status = 'placed' order by id limit 100")
        placed = [row[0] for row in cur.fetchall()]
        deleted = sorted(rng.sample(placed, min(n_deleted_orders, len(placed))))
        cur.execute("delete from order_items where order_id = any(%s)", (deleted,))
        deleted_items = cur.rowcount
        cur.execute("delete from orders where id = any(%s)", (deleted,))
    conn.close()
    return Changes(
        new_orders=new_orders,
        updated_customers=sorted(updated),
        new_charges=charges,
        deleted_orders=deleted,
        deleted_items=deleted_items,
    )
