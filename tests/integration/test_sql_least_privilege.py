"""The SQL database source as the least-privilege PostgreSQL role its README documents.

GIVEN a role with CONNECT on the database, USAGE on the schema and SELECT on the
configured tables only (and a password the server asks for), WHEN the source runs as
that role THEN it loads them; the role can neither write nor create anything; and a
configured table it was not granted fails in one line naming the source and the table.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import dlt
import duckdb
import psycopg2
import pytest

from dlt_sources.sql_database import load_file, sql_database_source
from dlt_sources.sql_database.config import SqlConfigError
from flows.config import environment
from tests.support.postgres import Database, password_dsn, require_password

SOURCE = "inventory_ro"
ROLE = "elt_sql_reader"
PASSWORD = "reader-pw-5ecret-3b7d"
CREDENTIALS = f"SOURCES__{SOURCE.upper()}__CREDENTIALS"

# dlt_sources/sql_database/README.md, "A least-privilege role", for the module's database
GRANTS = f"""
create role {ROLE} login nosuperuser nocreatedb nocreaterole noreplication;
grant connect on database {{database}} to {ROLE};
grant usage on schema public to {ROLE};
grant select on public.products, public.stock to {ROLE};
"""

TABLES = """
create table products (id bigint primary key, name text not null, updated_at timestamptz not null);
create table stock (product_id bigint primary key references products (id), quantity integer not null);
create table payroll (id bigint primary key, salary numeric(12, 2) not null);
insert into products values
    (1, 'kettle', '2025-01-01'), (2, 'teapot', '2025-01-02'), (3, 'cup', '2025-01-03');
insert into stock values (1, 10), (2, 0);
insert into payroll values (1, 5000);
"""


@pytest.fixture(scope="module")
def reader_dsn(postgres_database: Database) -> Iterator[str]:
    """The module's database with the tables and the read-only role: its DSN as that role
    (also in the source's credentials setting)."""
    with psycopg2.connect(postgres_database.dsn()) as conn, conn.cursor() as cur:
        cur.execute(TABLES)
        cur.execute(GRANTS.format(database=postgres_database.name))
    conn.close()
    require_password(postgres_database.server, ROLE, PASSWORD)
    dsn = password_dsn(postgres_database.server, postgres_database.name, ROLE, PASSWORD)
    with environment({CREDENTIALS: dsn}):
        yield dsn


def config_file(folder: Path, tables: str) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / f"{SOURCE}.yml"
    body = f"""
    credentials: "{{{{ secrets.sources.{SOURCE}.credentials }}}}"
    tables:
    """
    path.write_text(textwrap.dedent(body) + textwrap.indent(textwrap.dedent(tables).strip(), "  ") + "\n")
    return path


@pytest.mark.usefixtures("reader_dsn")
def test_the_read_only_role_loads_its_tables(module_dir: Path) -> None:
    path = config_file(
        module_dir / "granted",
        """
        - {name: products, primary_key: id, cursor: updated_at}
        - {name: stock, primary_key: product_id}
        """,
    )
    warehouse = module_dir / "warehouse.duckdb"
    pipeline = dlt.pipeline(
        pipeline_name="least_privilege",
        destination=dlt.destinations.duckdb(str(warehouse)),
        dataset_name=f"raw_{SOURCE}",
        pipelines_dir=str(module_dir / "pipelines"),
    )
    pipeline.run(sql_database_source(load_file(path)), loader_file_format="parquet").raise_on_failed_jobs()
    with duckdb.connect(str(warehouse), read_only=True) as con:
        loaded = {
            table: con.execute(f"select count(*) from raw_{SOURCE}.{table}").fetchone()[0]
            for table in ("products", "stock")
        }
    assert loaded == {"products": 3, "stock": 2}


def test_the_role_can_neither_write_nor_create(reader_dsn: str) -> None:
    conn = psycopg2.connect(reader_dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(
            "select rolsuper, rolcreatedb, rolcreaterole, rolreplication from pg_roles where rolname = %s",
            (ROLE,),
        )
        assert cur.fetchone() == (False, False, False, False)
        for statement in (
            "insert into products values (9, 'spoon', now())",
            "update products set name = name",
            "delete from stock",
            "truncate stock",
            "create table public.mine (id int)",
            "create schema mine",
            "select * from payroll",
        ):
            with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                cur.execute(statement)
    conn.close()
    # AND a wrong password is refused
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(reader_dsn.replace(PASSWORD, "not-the-password")).close()


@pytest.mark.usefixtures("reader_dsn")
def test_a_table_not_granted_fails_in_one_line_naming_source_and_table(module_dir: Path) -> None:
    path = config_file(
        module_dir / "not_granted",
        """
        - {name: products, primary_key: id}
        - {name: payroll, primary_key: id}
        """,
    )
    with pytest.raises(SqlConfigError) as caught:
        sql_database_source(load_file(path))
    message = str(caught.value)
    assert f"{SOURCE}.yml: table `payroll`" in message, message
    assert f"sources.{SOURCE}.credentials" in message and "permission denied for table payroll" in message
    assert "grant it SELECT" in message
    assert "\n" not in message and PASSWORD not in message
