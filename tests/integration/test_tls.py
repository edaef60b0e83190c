"""Encryption in transit: every source verifies the server it talks to, against real servers.

GIVEN one throwaway CA and servers that refuse unencrypted connections, their certificates
signed by it: Debian's PostgreSQL with ``ssl=on`` and Debian's MariaDB with
``require_secure_transport`` (certificate for ``localhost`` only), the Stripe stand-in over
HTTPS (certificate for 127.0.0.1)
WHEN a source is given that CA (libpq's ``sslmode=verify-full&sslrootcert=…``, PyMySQL's
``ssl_ca=…``, ``sources.<name>.ca_bundle``) THEN it loads: the SQL database source (its
catalog reads and its ADBC / connectorx readers), the CDC source (catalog, snapshot and the
replication connection) and the API sources
WHEN it is given another CA, or a database source connects to 127.0.0.1, which its
certificate does not name, THEN the load fails at once, in one line naming the source and
the setting to fix, and never the password.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dlt
import psycopg2
import pymysql
import pytest
from psycopg2 import sql

from dlt_sources.common.http import InsecureTransport
from dlt_sources.errors import SourceError, SourceUnreachable
from dlt_sources.github import github_source
from dlt_sources.postgres_cdc.catalog import connect as catalog_connection
from dlt_sources.postgres_cdc.stream import replication_connection
from dlt_sources.rest import declared_sources
from dlt_sources.sql_database import load_file, sql_database_source
from dlt_sources.stripe import stripe_source
from flows.config import environment
from flows.ingest import source_error_in
from standins.mariadb import PASSWORD as MARIADB_PASSWORD
from standins.mariadb import USER as MARIADB_USER
from standins.mariadb import MariaDbServer, running_mariadb, server_binary
from standins.postgres import PostgresServer, debian_binaries, running_postgres
from standins.stripe_api import StripeStore, serve_stripe
from standins.tls import CertificateAuthority
from tests.support.cdc import (
    ITEM_COLUMNS,
    ITEMS_SQL,
    ROLE,
    CdcDatabase,
    assert_replicated,
    create_database,
    run_cdc,
)
from tests.support.duckdb import query
from tests.support.postgres import execute_as_admin, fresh_database
from tests.support.sql_database import execute
from tests.support.stripe import API_KEY, customer

DATASET = "raw_cdc_test"  # read by the make_pipeline fixture (the CDC test source's dataset)
SERVER_NAME = "localhost"  # the only name the database servers' certificate holds
PASSWORD = "tls-test-pw-7b1f"  # every role's: the messages must never show it
SQL_ROLE = "elt_tls_reader"
CUSTOMERS = 5


@dataclass(frozen=True)
class CaFiles:
    """The CA that signed the servers' certificates, and one that signed nothing they show."""

    right: Path
    wrong: Path


@pytest.fixture(scope="module")
def authority() -> CertificateAuthority:
    return CertificateAuthority.create("elt test CA")


@pytest.fixture(scope="module")
def ca_files(authority: CertificateAuthority, module_dir: Path) -> CaFiles:
    right, wrong = module_dir / "ca.pem", module_dir / "impostor-ca.pem"
    right.write_bytes(authority.certificate)
    wrong.write_bytes(CertificateAuthority.create("impostor CA").certificate)
    return CaFiles(right, wrong)


@pytest.fixture(scope="module")
def postgres(authority: CertificateAuthority, module_dir: Path) -> Iterator[PostgresServer]:
    """Debian's PostgreSQL (the pgserver wheel's has no OpenSSL): TLS only, except for the admin."""
    binaries = debian_binaries()
    if binaries is None:
        pytest.skip(
            "Debian's PostgreSQL server is not installed (apt-get install postgresql; .ci/run installs it)"
        )
    tls = authority.issue(SERVER_NAME)
    with running_postgres(module_dir / "pg", durable=False, binaries=binaries, tls=tls) as server:
        yield server


@pytest.fixture(scope="module")
def mariadb(authority: CertificateAuthority, module_dir: Path) -> Iterator[MariaDbServer]:
    if server_binary() is None:
        pytest.skip("MariaDB server not installed (apt-get install mariadb-server; .ci/run installs it)")
    with running_mariadb(module_dir / "mariadb", tls=authority.issue(SERVER_NAME)) as server:
        admin = pymysql.connect(unix_socket=str(server.socket), user="root", autocommit=True)
        with admin.cursor() as cur:
            cur.execute("create database shop")
            cur.execute("create table shop.orders (id bigint primary key, amount decimal(12, 2))")
            cur.execute("insert into shop.orders values (1, 12.50), (2, 7.25)")
        admin.close()
        yield server


@pytest.fixture(scope="module")
def https_api(authority: CertificateAuthority) -> Iterator[str]:
    """The Stripe stand-in over HTTPS; its certificate names 127.0.0.1, where it listens."""
    store = StripeStore()
    for i in range(CUSTOMERS):
        store.add("customers", customer(i))
    with serve_stripe(store, API_KEY, tls=authority.issue("127.0.0.1").ssl_context()) as url:
        yield url


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "dlt_data"))
    monkeypatch.chdir(tmp_path)  # dlt reads ./.dlt/*.toml


def libpq_url(server: PostgresServer, role: str, database: str, ca: Path, host: str = SERVER_NAME) -> str:
    return (
        f"postgresql://{role}:{PASSWORD}@{host}:{server.port}/{database}?sslmode=verify-full&sslrootcert={ca}"
    )


def mysql_url(server: MariaDbServer, ca: Path, host: str = SERVER_NAME) -> str:
    return f"mysql://{MARIADB_USER}:{MARIADB_PASSWORD}@{host}:{server.port}/shop?ssl_ca={ca}"


@pytest.fixture(scope="module")
def sql_database(postgres: PostgresServer) -> str:
    """A database with one table that a password role may read, over TLS only."""
    name = fresh_database(postgres, "tls_sql")
    execute_as_admin(
        postgres,
        sql.SQL("create role {} login password {}").format(sql.Identifier(SQL_ROLE), sql.Literal(PASSWORD)),
    )
    execute(
        postgres.dsn(name),
        "create table items (id bigint primary key, amount numeric(12, 2));"
        "insert into items select i, i * 1.5 from generate_series(1, 25) i;"
        f"grant select on items to {SQL_ROLE}",
    )
    return name


@pytest.fixture(scope="module")
def cdc_database(postgres: PostgresServer) -> CdcDatabase:
    database = create_database(postgres, "tls_cdc", ITEMS_SQL, ["items", "notes"])
    execute_as_admin(
        postgres, sql.SQL("alter role {} password {}").format(sql.Identifier(ROLE), sql.Literal(PASSWORD))
    )
    return database


def write_database_file(folder: Path, source: str, table: str) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / f"{source}.yml"
    path.write_text(
        textwrap.dedent(
            f"""
            credentials: "{{{{ secrets.sources.{source}.credentials }}}}"
            tables:
              - name: {table}
                primary_key: id
            """
        )
    )
    return path


def assert_one_line_naming(error: BaseException | None, *parts: str) -> str:
    """A refused certificate: one line, not retried, naming what to fix, never the password."""
    assert isinstance(error, SourceError) and not isinstance(error, SourceUnreachable), repr(error)
    message = str(error)
    assert "\n" not in message
    assert PASSWORD not in message and MARIADB_PASSWORD not in message and API_KEY not in message
    for part in parts:
        assert part in message, (part, message)
    return message


def test_postgres_refuses_unencrypted_connections(
    postgres: PostgresServer, sql_database: str, ca_files: CaFiles
) -> None:
    """So every load below went over TLS."""
    plain = libpq_url(postgres, SQL_ROLE, sql_database, ca_files.right).replace("verify-full", "disable")
    with pytest.raises(psycopg2.OperationalError, match="no encryption"):
        psycopg2.connect(plain)


def test_mariadb_refuses_unencrypted_connections(mariadb: MariaDbServer, ca_files: CaFiles) -> None:
    login = {"host": SERVER_NAME, "port": mariadb.port, "user": MARIADB_USER, "password": MARIADB_PASSWORD}
    pymysql.connect(**login, ssl_ca=str(ca_files.right)).close()
    with pytest.raises(pymysql.err.OperationalError, match="Access denied"):  # MariaDB's answer to plain TCP
        pymysql.connect(**login, ssl_disabled=True)


# --- PostgreSQL: the SQL database source and CDC ---------------------------------------


def test_the_sql_source_reads_postgres_over_verify_full(
    postgres: PostgresServer,
    sql_database: str,
    ca_files: CaFiles,
    make_pipeline: Any,
    db_path: Path,
    tmp_path: Path,
) -> None:
    config = write_database_file(tmp_path / "defs", "tls_pg", "items")
    url = libpq_url(postgres, SQL_ROLE, sql_database, ca_files.right)
    with environment({"SOURCES__TLS_PG__CREDENTIALS": url}):
        source = sql_database_source(load_file(config))  # reflects the table through psycopg2
        make_pipeline("tls_pg").run(source, loader_file_format="parquet").raise_on_failed_jobs()  # ADBC
    assert query(db_path, f"select count(*), sum(amount) from {DATASET}.items") == [(25, 487.5)]


def test_cdc_snapshot_and_changes_over_verify_full(
    postgres: PostgresServer, cdc_database: CdcDatabase, ca_files: CaFiles, make_pipeline: Any, db_path: Path
) -> None:
    url = libpq_url(postgres, ROLE, cdc_database.name, ca_files.right)
    cdc_database.execute("insert into items (id, name, qty) values (1, 'first', 1), (2, 'second', 2)")
    with environment(cdc_database.environment(CREDENTIALS=url)):
        pipeline = make_pipeline("tls_cdc")
        report = run_cdc(pipeline)  # catalog, exported snapshot (replication connection), COPY
        assert any("snapshot" in note for note in report.notes)
        cdc_database.execute("update items set qty = 10 where id = 2", "delete from items where id = 1")
        run_cdc(pipeline)  # the changes come through the replication connection
    assert_replicated(cdc_database, db_path, DATASET, "items", ITEM_COLUMNS)
    assert query(db_path, f"select id, qty from {DATASET}.items") == [(2, 10)]


@pytest.mark.parametrize(
    ("ca", "host", "fix"),
    [
        ("wrong", SERVER_NAME, "set `sslrootcert` in the URL"),
        ("right", "127.0.0.1", "the URL's host must be a name the server's certificate holds"),
    ],
    ids=["wrong CA", "host not in the certificate"],
)
def test_a_refused_postgres_certificate_fails_every_connection_in_one_line(
    postgres: PostgresServer,
    sql_database: str,
    cdc_database: CdcDatabase,
    ca_files: CaFiles,
    make_pipeline: Any,
    tmp_path: Path,
    ca: str,
    host: str,
    fix: str,
) -> None:
    ca_file = getattr(ca_files, ca)
    sql_url = libpq_url(postgres, SQL_ROLE, sql_database, ca_file, host)
    config = write_database_file(tmp_path / "defs", "tls_pg", "items")
    with environment({"SOURCES__TLS_PG__CREDENTIALS": sql_url}), pytest.raises(SourceError) as sql_failure:
        sql_database_source(load_file(config))
    assert_one_line_naming(sql_failure.value, "source tls_pg", "sources.tls_pg.credentials", fix)

    cdc_url = libpq_url(postgres, ROLE, cdc_database.name, ca_file, host)
    with environment(cdc_database.environment(CREDENTIALS=cdc_url)), pytest.raises(Exception) as cdc_failure:
        run_cdc(make_pipeline("tls_cdc_refused"))
    assert_one_line_naming(
        source_error_in(cdc_failure.value), "source cdc_test", "sources.cdc_test.credentials", fix
    )
    # the replication connection and the catalog's, each on its own
    for connect in (replication_connection, catalog_connection):
        with pytest.raises(SourceError) as refused:
            connect(cdc_url, "cdc_test")
        assert_one_line_naming(refused.value, "sources.cdc_test.credentials", fix)


# --- MariaDB: the SQL database source ---------------------------------------------------


def test_the_sql_source_reads_mariadb_verifying_ca_and_host(
    mariadb: MariaDbServer, ca_files: CaFiles, make_pipeline: Any, db_path: Path, tmp_path: Path
) -> None:
    config = write_database_file(tmp_path / "defs", "tls_maria", "orders")
    with environment({"SOURCES__TLS_MARIA__CREDENTIALS": mysql_url(mariadb, ca_files.right)}):
        source = sql_database_source(load_file(config))  # PyMySQL: ssl_ca, host checked
        make_pipeline("tls_maria").run(
            source, loader_file_format="parquet"
        ).raise_on_failed_jobs()  # connectorx
    assert query(db_path, f"select count(*), sum(amount) from {DATASET}.orders") == [(2, 19.75)]


@pytest.mark.parametrize(
    ("ca", "host", "fix"),
    [
        ("wrong", SERVER_NAME, "set `ssl_ca` in the URL"),
        ("right", "127.0.0.1", "the URL's host must be a name the server's certificate holds"),
    ],
    ids=["wrong CA", "host not in the certificate"],
)
def test_a_refused_mariadb_certificate_fails_in_one_line(
    mariadb: MariaDbServer, ca_files: CaFiles, tmp_path: Path, ca: str, host: str, fix: str
) -> None:
    config = write_database_file(tmp_path / "defs", "tls_maria", "orders")
    url = mysql_url(mariadb, getattr(ca_files, ca), host)
    with environment({"SOURCES__TLS_MARIA__CREDENTIALS": url}), pytest.raises(SourceError) as failure:
        sql_database_source(load_file(config))
    assert_one_line_naming(failure.value, "source tls_maria", "sources.tls_maria.credentials", fix)


# --- HTTP API sources --------------------------------------------------------------------


def rest_source_over(api: str, folder: Path) -> Any:
    """A declarative REST source reading the stand-in's customers: ``tls_rest``."""
    folder.mkdir()
    (folder / "tls_rest.yml").write_text(
        textwrap.dedent(
            """
            client:
              base_url: "{{ config.sources.tls_rest.base_url }}"
              auth: {type: bearer, token: "{{ secrets.sources.tls_rest.token }}"}
            resource_defaults:
              primary_key: id
              write_disposition: merge
            resources:
              - name: customers
                endpoint: {path: customers, params: {limit: 100}, data_selector: data}
            """
        )
    )
    return declared_sources(folder)["tls_rest"].factory()


API_SOURCES = {
    "stripe": ({"API_KEY": API_KEY, "BASE_URL": "{api}"}, lambda api, folder: stripe_source()),
    "github": (
        {"ACCESS_TOKEN": API_KEY, "BASE_URL": "{api}", "REPOSITORIES": '["octo/repo"]'},
        lambda api, folder: github_source(),
    ),
    "tls_rest": ({"TOKEN": API_KEY, "BASE_URL": "{api}/v1"}, rest_source_over),
}


def api_settings(name: str, api: str, ca_bundle: Path) -> dict[str, str]:
    values, _ = API_SOURCES[name]
    settings = {key: value.format(api=api) for key, value in values.items()} | {"CA_BUNDLE": str(ca_bundle)}
    return {f"SOURCES__{name.upper()}__{key}": value for key, value in settings.items()}


def load_api(name: str, api: str, make_pipeline: Any, folder: Path) -> dlt.Pipeline:
    _, factory = API_SOURCES[name]
    pipeline = make_pipeline(name)
    pipeline.run(factory(api, folder), loader_file_format="parquet").raise_on_failed_jobs()
    return pipeline


@pytest.mark.parametrize("name", ["stripe", "tls_rest"])
def test_api_sources_load_over_https_trusting_their_ca_bundle(
    name: str, https_api: str, ca_files: CaFiles, make_pipeline: Any, db_path: Path, tmp_path: Path
) -> None:
    # the source's own setting wins over the process-wide one
    with environment(
        api_settings(name, https_api, ca_files.right) | {"REQUESTS_CA_BUNDLE": str(ca_files.wrong)}
    ):
        load_api(name, https_api, make_pipeline, tmp_path / "rest")
    assert query(db_path, f"select count(*) from {DATASET}.customers") == [(CUSTOMERS,)]


def test_the_github_source_trusts_its_ca_bundle(
    https_api: str, ca_files: CaFiles, make_pipeline: Any, tmp_path: Path
) -> None:
    """The stand-in speaks Stripe, not GitHub: with the right CA the connection is made and the
    failure is the server's answer (HTTP 404), not the certificate."""
    with (
        environment(api_settings("github", https_api, ca_files.right)),
        pytest.raises(Exception) as failure,
    ):
        load_api("github", https_api, make_pipeline, tmp_path / "rest")
    error = source_error_in(failure.value)
    assert not isinstance(error, InsecureTransport) and "HTTP 404" in str(error), error


@pytest.mark.parametrize("name", list(API_SOURCES))
def test_an_api_behind_a_certificate_of_another_ca_fails_in_one_line(
    name: str, https_api: str, ca_files: CaFiles, make_pipeline: Any, tmp_path: Path
) -> None:
    with environment(api_settings(name, https_api, ca_files.wrong)), pytest.raises(Exception) as failure:
        load_api(name, https_api, make_pipeline, tmp_path / "rest")
    error = source_error_in(failure.value)
    assert isinstance(error, InsecureTransport)
    assert_one_line_naming(
        error, f"{name} source", f"`sources.{name}.ca_bundle` (env SOURCES__{name.upper()}__CA_BUNDLE)"
    )
