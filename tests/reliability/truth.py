"""The source truth against the warehouse, row by row: what was lost, duplicated or wrong.

Each table is read on both sides as ``key -> row hash`` (tests/support/row_hashes.py). A key the
source has and the warehouse lacks is *lost*; a key the warehouse holds more than once is
*duplicated*; a key whose row differs, or that the source no longer has (a delete that
never arrived), is *wrong*. The campaign fails on any of the three.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import psycopg2

from standins import DemoSources
from tests.support.row_hashes import canonical, row_hash

SHOP_TABLES = ("customers", "products", "orders", "order_items")


@dataclass
class Comparison:
    """One table compared once."""

    table: str
    compared: int
    lost: int
    duplicated: int
    wrong: int

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.wrong)

    def describe(self) -> str:
        counts = f"{self.lost} lost, {self.duplicated} duplicated, {self.wrong} wrong"
        return f"{self.table}: {self.compared} rows, {counts}"


def compare(table: str, source: Iterable[Sequence[Any]], warehouse: Iterable[Sequence[Any]]) -> Comparison:
    """Rows are ``(key, value, …)`` on both sides; values are hashed, keys matched."""
    truth = {row[0]: row_hash(row[1:]) for row in source}
    seen: Counter[Any] = Counter()
    loaded: dict[Any, str] = {}
    for row in warehouse:
        seen[row[0]] += 1
        loaded[row[0]] = row_hash(row[1:])
    lost = sum(1 for key in truth if key not in loaded)
    # a differing row, or one the source deleted and the warehouse kept
    wrong = sum(1 for key, digest in loaded.items() if truth.get(key) != digest)
    duplicated = sum(count - 1 for count in seen.values())
    return Comparison(table, len(truth), lost, duplicated, wrong)


def _postgres_rows(dsn: str, sql: str) -> list[tuple[Any, ...]]:
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall()
    finally:
        conn.close()


def _columns(dsn: str, table: str) -> list[str]:
    rows = _postgres_rows(
        dsn,
        "select column_name from information_schema.columns"
        f" where table_schema = 'public' and table_name = '{table}' order by ordinal_position",
    )
    return [name for (name,) in rows]


class Warehouse:
    """Read-only queries on the campaign's DuckDB file (opened per query: a run may hold it next)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        with duckdb.connect(str(self.path), read_only=True) as con:
            return con.execute(sql).fetchall()


def postgres_tables(warehouse: Warehouse, dsn: str, dataset: str, tables: Sequence[str]) -> list[Comparison]:
    """Every column of each PostgreSQL table against its raw copy (CDC and the SQL source)."""
    out = []
    for table in tables:
        columns = ", ".join(_columns(dsn, table))
        source = _postgres_rows(dsn, f"select {columns} from {table}")
        out.append(
            compare(f"{dataset}.{table}", source, warehouse.rows(f"select {columns} from {dataset}.{table}"))
        )
    return out


def stripe_tables(warehouse: Warehouse, sources: DemoSources) -> list[Comparison]:
    """Charges (amount, refunds, status) and customers as the Stripe stand-in holds them."""
    store = sources.stripe
    charges = [store.get("charges", id) for id in store.ids("charges")]
    customers = [store.get("customers", id) for id in store.ids("customers")]
    return [
        compare(
            "raw_stripe.charges",
            [(c["id"], c["amount"], c["amount_refunded"], c["status"]) for c in charges if c],
            warehouse.rows("select id, amount, amount_refunded, status from raw_stripe.charges"),
        ),
        compare(
            "raw_stripe.customers",
            [(c["id"], c["created"]) for c in customers if c],
            warehouse.rows("select id, created from raw_stripe.customers"),
        ),
    ]


def github_tables(warehouse: Warehouse, sources: DemoSources) -> list[Comparison]:
    """Issues (with pull requests) and comments of every repository of the GitHub stand-in."""
    store = sources.github
    fields = {"issues": ("updated_at", "title", "state"), "issue_comments": ("updated_at", "body")}
    out = []
    for table, columns in fields.items():
        truth = [
            (obj["id"], *(obj[column] for column in columns))
            for repo in sorted(store.repos)
            for obj in store.truth(repo, table)
        ]
        loaded = warehouse.rows(f"select id, {', '.join(columns)} from raw_github.{table}")
        out.append(compare(f"raw_github.{table}", _utc_text(truth), _utc_text(loaded)))
    return out


def _utc_text(rows: Iterable[Sequence[Any]]) -> list[tuple[Any, ...]]:
    """GitHub's ISO strings and the warehouse's timestamps as one text form."""

    def stamp(value: Any) -> Any:
        if isinstance(value, str) and value.endswith("Z"):
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return canonical(value)

    return [(row[0], stamp(row[1]), *row[2:]) for row in rows]


def marts(warehouse: Warehouse, shop_dsn: str) -> list[Comparison]:
    """The published marts against the shop database: every order once, every customer's
    current version with its current country."""
    return [
        compare(
            "analytics_marts.fct_orders",
            _postgres_rows(shop_dsn, "select id, customer_id from orders"),
            warehouse.rows("select order_id, customer_id from analytics_marts.fct_orders"),
        ),
        compare(
            "analytics_marts.dim_customers (current)",
            _postgres_rows(shop_dsn, "select id, country from customers"),
            warehouse.rows("select customer_id, country from analytics_marts.dim_customers where is_current"),
        ),
    ]
