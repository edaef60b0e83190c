"""The shop source through CDC and the ``elt cdc`` commands, on the demo's shop database.

GIVEN the demo shop (its least-privilege replication role, the admin's publication)
WHEN ``run_source("shop")`` and the ``elt cdc`` commands run as an operator would use
them THEN status shows slot and lag, a dropped slot fails the next run fast with the
remediation, and ``elt cdc resnapshot`` recovers.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg2
import pytest
from typer.testing import CliRunner

from dlt_sources.postgres_cdc import SlotLost
from flows.cli import app
from flows.config import Settings, environment
from flows.ingest import run_source
from flows.warehouses import warehouse_named
from standins import dataset, shop_db
from tests.support.postgres import Database

DATASET = "raw_shop"


@pytest.fixture(scope="module")
def shop(postgres_database: Database) -> Database:
    """The demo's shop database, under the module's own name on the session's server, seeded
    and published. The slot keeps its production name ``elt_shop``, which no other module on
    that server uses (the demo stand-ins on it name theirs after their database; it is dropped
    with the database)."""
    shop_db.create_database(postgres_database.server.dsn(), postgres_database.name)
    shop_db.seed(postgres_database.dsn(), dataset.generate(500))
    shop_db.enable_replication(postgres_database.dsn())
    return postgres_database


@pytest.fixture
def settings(shop: Database, db_path) -> Iterator[Settings]:  # type: ignore[no-untyped-def]
    replication = shop.dsn(user=shop_db.REPLICATION_ROLE)
    with environment({"SOURCES__SHOP__CREDENTIALS": replication, "ELT_DUCKDB_PATH": str(db_path)}):
        yield Settings(warehouse=warehouse_named("duckdb"), duckdb_path=db_path, dbt_schema="analytics")


def elt_cdc(*args: str) -> str:
    result = CliRunner().invoke(app, ["cdc", *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_cdc_commands_and_recovery_from_a_dropped_slot(shop: Database, settings: Settings) -> None:
    admin_dsn = shop.dsn()
    # the admin's set-up is idempotent
    assert "publication elt_shop publishes public.customers" in elt_cdc(
        "setup", "shop", "--admin-dsn", admin_dsn
    )
    assert "not created yet" in elt_cdc("status", "shop")
    first = run_source("shop", settings)
    assert first.rows["orders"] == 500
    assert any("slot elt_shop retains" in note for note in first.notes), first.notes
    # changes arrive as exactly the changed rows, deletes included
    changes = shop_db.simulate_business(admin_dsn, n_new_orders=3, n_updated_customers=2, n_deleted_orders=1)
    second = run_source("shop", settings)
    assert second.rows["orders"] == 3 + 1 and second.rows["customers"] == 2
    assert second.rows["order_items"] == 3 + changes.deleted_items
    status = elt_cdc("status", "shop")
    assert "wal_status: reserved" in status and "below the" in status
    # GIVEN the slot is dropped WHEN the next run starts THEN it fails with the remediation
    assert "slot elt_shop dropped" in elt_cdc("drop", "shop")
    with pytest.raises(SlotLost, match="elt cdc resnapshot shop"):
        run_source("shop", settings)
    # WHEN the operator re-snapshots THEN every table is reloaded and CDC carries on
    assert "re-snapshot of shop: " in elt_cdc("resnapshot", "shop")
    shop_db.simulate_business(admin_dsn, n_new_orders=1, n_updated_customers=1, n_deleted_orders=0, seed=8)
    assert run_source("shop", settings).rows["orders"] == 1


def test_a_missing_setting_or_unknown_source_fails_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOURCES__SHOP__CREDENTIALS", raising=False)
    result = CliRunner().invoke(app, ["cdc", "status", "shop"])
    assert result.exit_code == 1 and "SOURCES__SHOP__CREDENTIALS" in result.output
    result = CliRunner().invoke(app, ["cdc", "status", "stripe"])
    assert result.exit_code == 1 and "not a CDC source" in result.output


def test_the_replication_role_is_least_privilege(shop: Database) -> None:
    """The role the shop source connects as may log in, replicate and read the published
    tables; nothing else: no superuser or other power, owns nothing, writes nothing."""
    role = shop_db.REPLICATION_ROLE
    conn = psycopg2.connect(shop.dsn())
    try:
        with conn.cursor() as cur:
            # a table outside the publication (rolled back below)
            cur.execute("create table staff_notes (id bigint primary key, note text)")
            cur.execute(
                "select rolcanlogin, rolreplication, rolsuper, rolcreatedb, rolcreaterole, rolbypassrls"
                " from pg_roles where rolname = %s",
                (role,),
            )
            assert cur.fetchone() == (True, True, False, False, False, False)
            cur.execute(
                "select count(*) from pg_auth_members m join pg_roles r on r.oid = m.member"
                " where r.rolname = %s",  # e.g. pg_read_all_data, pg_write_all_data
                (role,),
            )
            assert cur.fetchone() == (0,)
            cur.execute(
                "select (select count(*) from pg_class where relowner = r.oid)"
                " + (select count(*) from pg_namespace where nspowner = r.oid)"
                " + (select count(*) from pg_database where datdba = r.oid)"
                " + (select count(*) from pg_publication where pubowner = r.oid)"
                " from pg_roles r where r.rolname = %s",
                (role,),
            )
            assert cur.fetchone() == (0,)
            cur.execute(
                "select tablename from pg_publication_tables where pubname = %s and schemaname = 'public'",
                (shop_db.PUBLICATION,),
            )
            published = {name for (name,) in cur.fetchall()}
            assert published == set(shop_db.TABLES)
            cur.execute(
                "select tablename, has_table_privilege(%(role)s, 'public.' || tablename, 'SELECT'),"
                " has_table_privilege(%(role)s, 'public.' || tablename,"
                " 'INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')"
                " from pg_tables where schemaname = 'public'",
                {"role": role},
            )
            privileges = {table: (select, write) for table, select, write in cur.fetchall()}
            assert privileges == {
                table: (table in published, False) for table in [*shop_db.TABLES, "staff_notes"]
            }
            cur.execute(
                "select has_schema_privilege(%(role)s, 'public', 'CREATE'),"
                " has_database_privilege(%(role)s, current_database(), 'CREATE')",
                {"role": role},
            )
            assert cur.fetchone() == (False, False)
    finally:
        conn.rollback()
        conn.close()
    # AND connected as the role, a write is refused by the server itself
    with psycopg2.connect(shop.dsn(user=role)) as reader, reader.cursor() as cur:
        cur.execute("select count(*) from orders")
        assert cur.fetchone()[0] > 0
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            cur.execute("update orders set status = status")
    reader.close()
