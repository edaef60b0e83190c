"""The campaign's sources and the changes written to them between (and during) runs.

- ``shop`` (Postgres CDC): the demo's business simulation — new paid orders with items,
  customers who move, abandoned orders deleted — with a Stripe charge per new order;
- ``inventory`` (SQL database source): a ``stock_levels`` table in its own database, read
  by a SELECT-only role, incremental on ``updated_at``; rows are inserted and updated,
  never deleted (a cursor cannot see deletes — that is what CDC is for);
- ``github``: new issues, edited issues and new comments in the stand-in.

One writer at a time (sequential autocommit statements), so commit order is cursor order:
a cursor-based source can only be asked to see what was committed in cursor order.
"""

from __future__ import annotations

import random
import shutil
import threading
from pathlib import Path

import psycopg2

from flows.config import CHECKS_DIR
from standins import DemoSources, shop_db

INVENTORY_DATABASE = "inventory"
INVENTORY_SOURCE = "inventory"
INVENTORY_TABLE = "stock_levels"
INVENTORY_ROWS = 20_000
CAMPAIGN_SOURCES = ["shop", "stripe", "github", INVENTORY_SOURCE]

INVENTORY_YAML = f"""\
credentials: "{{{{ secrets.sources.{INVENTORY_SOURCE}.credentials }}}}"
tables:
  - name: {INVENTORY_TABLE}
    primary_key: id
    cursor: updated_at
"""


INVENTORY_CONTRACT = f"""\
# The campaign's SQL source (tests/reliability): its raw table, keyed and non-empty.
dataset: warehouse/raw_{INVENTORY_SOURCE}/{INVENTORY_TABLE}

checks:
  - schema:
      allow_extra_columns: true
      allow_other_column_order: true
  - row_count:
      threshold:
        must_be_greater_than: 0

columns:
  - name: id
    data_type: bigint
    checks:
      - missing:
      - duplicate:
  - name: sku
    data_type: varchar
  - name: on_hand
    data_type: integer
  - name: updated_at
    data_type: timestamp with time zone
"""


def _execute(dsn: str, *statements: str | tuple[str, tuple]) -> None:
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for statement in statements:
                sql, params = statement if isinstance(statement, tuple) else (statement, ())
                cur.execute(sql, params)
    finally:
        conn.close()


def create_inventory(sources: DemoSources, workdir: Path) -> dict[str, str]:
    """The SQL source's database, its reader role's grants, its YAML and its raw contract
    (in a copy of checks/); returns the settings that point the runs at them."""
    admin = sources.postgres.dsn()
    _execute(admin, f"create database {INVENTORY_DATABASE}")
    dsn = sources.postgres.dsn(INVENTORY_DATABASE)
    _execute(
        dsn,
        f"""create table {INVENTORY_TABLE} (
            id bigint primary key, sku text not null, on_hand integer not null,
            updated_at timestamptz not null default clock_timestamp())""",
        (
            f"insert into {INVENTORY_TABLE} (id, sku, on_hand)"
            " select g, 'SKU-' || g, mod(g * 7, 500) from generate_series(1, %s) g",
            (INVENTORY_ROWS,),
        ),
        f"grant connect on database {INVENTORY_DATABASE} to {shop_db.READER_ROLE}",
        f"grant usage on schema public to {shop_db.READER_ROLE}",
        f"grant select on {INVENTORY_TABLE} to {shop_db.READER_ROLE}",
    )
    config_dir = workdir / "sql_sources"
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / f"{INVENTORY_SOURCE}.yml").write_text(INVENTORY_YAML)
    checks = workdir / "checks"
    shutil.copytree(CHECKS_DIR, checks, dirs_exist_ok=True)
    (checks / "raw" / INVENTORY_SOURCE).mkdir(exist_ok=True)
    (checks / "raw" / INVENTORY_SOURCE / f"{INVENTORY_TABLE}.yml").write_text(INVENTORY_CONTRACT)
    reader = sources.postgres.dsn(INVENTORY_DATABASE, user=shop_db.READER_ROLE)
    return {
        "ELT_CHECKS_DIR": str(checks),
        "ELT_SQL_SOURCES_DIR": str(config_dir),
        f"SOURCES__{INVENTORY_SOURCE.upper()}__CREDENTIALS": reader,
    }


class Workload:
    """Writes changes to every campaign source (one writer at a time)."""

    def __init__(self, sources: DemoSources, seed: int) -> None:
        self.sources = sources
        self.rng = random.Random(seed)
        self._lock = threading.Lock()  # the continuous writer and a round never write at once

    @property
    def inventory_dsn(self) -> str:
        return self.sources.postgres.dsn(INVENTORY_DATABASE)

    def step(self) -> None:
        """One batch of changes to each source."""
        with self._lock:
            self._shop_and_stripe()
            self._inventory()
            self._github()

    def touch_all_order_items(self) -> None:
        """Every order item changes at once: a long change stream for the CDC source to read."""
        with self._lock:
            shift = "update order_items set updated_at = updated_at + interval '1 second'"
            _execute(self.sources.shop_admin_dsn, shift)

    def _shop_and_stripe(self) -> None:
        changes = shop_db.simulate_business(
            self.sources.shop_admin_dsn,
            n_new_orders=self.rng.randint(1, 6),
            n_updated_customers=self.rng.randint(1, 4),
            n_deleted_orders=self.rng.randint(0, 2),
            seed=self.rng.randrange(1 << 30),
        )
        self.sources.stripe.extend("charges", changes.new_charges)

    def _inventory(self) -> None:
        inserts, updates = self.rng.randint(5, 50), self.rng.randint(5, 200)
        _execute(
            self.inventory_dsn,
            (
                f"insert into {INVENTORY_TABLE} (id, sku, on_hand)"
                f" select m + g, 'SKU-' || (m + g), g from generate_series(1, %s) g,"
                f" (select max(id) m from {INVENTORY_TABLE}) last",
                (inserts,),
            ),
            (
                f"update {INVENTORY_TABLE} set on_hand = on_hand + 1, updated_at = clock_timestamp()"
                f" where id in (select id from {INVENTORY_TABLE} order by random() limit %s)",
                (updates,),
            ),
        )

    def _github(self) -> None:
        store = self.sources.github
        repo = self.rng.choice(sorted(store.repos))
        store.add_issue(repo, f"campaign issue {self.rng.randrange(1 << 20)}")
        numbers = [obj["number"] for obj in store.truth(repo, "issues")]
        store.edit_issue(repo, self.rng.choice(numbers), title=f"edited {self.rng.randrange(1 << 20)}")
        store.add_comment(repo, self.rng.choice(numbers), "campaign comment")


class ContinuousWriter:
    """A thread that keeps changing the sources until stopped (runs happen meanwhile)."""

    def __init__(self, workload: Workload, pause_s: float = 0.2) -> None:
        self.workload = workload
        self.pause_s = pause_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="continuous-writer", daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.pause_s):
                self.workload.step()
        except BaseException as exc:  # surfaced by stop(): a dead writer must not pass silently
            self.error = exc

    def __enter__(self) -> ContinuousWriter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        if self.error is not None:
            raise RuntimeError(f"the continuous writer failed: {self.error!r}") from self.error
