"""The whole ELT flow, for real: PostgreSQL and the Stripe stand-in on 127.0.0.1, dlt into
a DuckDB file, dbt (each node a Prefect task run), Soda contracts, all inside Prefect runs.

The runs build on each other (first load → unchanged re-run on a fresh worker →
source changes → bad rows → wrong credentials → unreachable source), so they share one
module-scoped set-up. Every secret is a known value (the shop's replication role really
has to give its password), so the last tests can search everything the runs left behind
for them, and for the customers' raw emails.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from pathlib import Path

import duckdb
import psycopg2
import pytest
from prefect import get_client
from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterId
from prefect.variables import Variable
from typer.testing import CliRunner

from dlt_sources.registry import SOURCES
from flows.alerts import INCIDENTS_VARIABLE
from flows.audit import FAILED, LOADED
from flows.cli import app
from flows.config import data_dir, environment, load_settings
from flows.docs import generate_docs
from flows.docs import serve as serve_docs
from flows.elt import EltRunFailed, elt
from flows.report import RunSummary
from flows.transform import run_dbt_build
from standins import (
    DEMO_GITHUB_TOKEN,
    DEMO_STRIPE_KEY,
    DEMO_TICKETS_TOKEN,
    DemoSources,
    demo_sources,
    shop_db,
)
from standins.dataset import charge_object
from standins.postgres import PostgresServer
from tests.support import pull_requests
from tests.support.dbt_selection import dbt_selects
from tests.support.demo_tables import (
    COUNTED_TABLES,
    assert_marts_show_the_changes,
    assert_moved_customers_versioned,
    change_the_sources,
    expected_change_rows,
    rows_loaded,
)
from tests.support.openlineage import round_trips
from tests.support.postgres import password_dsn, require_password
from tests.support.privacy import (
    HOLDING,
    Person,
    add_person,
    assert_proof,
    forget,
    found,
    last_proof,
    load_three_versions,
    quarantine_marts,
    reload_everything,
)
from tests.support.pull_requests import models_built, models_selected
from tests.support.receivers import Received, Request, http_recorder, webhook_receiver
from tests.support.row_hashes import row_hash
from tests.support.secrets_scan import (
    EMAIL_SQL,
    Text,
    dbt_folders,
    emails_in,
    exception_texts,
    file_texts,
    flow_run_ids_since,
    leaks,
    prefect_texts,
    warehouse_texts,
)

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("prefect_harness")]

N_ORDERS = 3_000
# Known secret values: none of them may turn up in anything the runs leave behind.
SHOP_PASSWORD = "shop-cdc-pw-5ecret-7f3a9c"
PII_SALT = "pii-salt-5ecret-0b6e4d2a"
WEBHOOK_TOKEN = "e2e-hook-token-5ecret-91c2"
WRONG_STRIPE_KEY = "sk_test_revoked_e2e_5ecret_0044"
WRONG_SHOP_PASSWORD = "wrong-shop-pw-5ecret-d81e"
LINEAGE_KEY = "lineage-api-key-5ecret-3e7d"
SECRETS = [
    DEMO_STRIPE_KEY,
    DEMO_GITHUB_TOKEN,
    DEMO_TICKETS_TOKEN,
    SHOP_PASSWORD,
    PII_SALT,
    WEBHOOK_TOKEN,
    WRONG_STRIPE_KEY,
    WRONG_SHOP_PASSWORD,
    LINEAGE_KEY,
]


@pytest.fixture(scope="module")
def started() -> datetime:
    """When this module's first flow run was not yet created: its runs are the ones after."""
    return datetime.now(UTC) - timedelta(seconds=1)


@pytest.fixture(scope="module")
def evidence() -> list[Text]:
    """Texts the tests saw that Prefect does not keep: raised exceptions, the CLI's output."""
    return []


@dataclass(frozen=True)
class AlertChannel:
    url: str
    received: Received

    @property
    def messages(self) -> list[tuple[str, str, str]]:
        return self.received.messages


@pytest.fixture(scope="module")
def alerts() -> Iterator[AlertChannel]:
    """A webhook alert channel on 127.0.0.1; its URL carries a token, like a real one."""
    with webhook_receiver() as (url, received):
        yield AlertChannel(f"{url}/e2e?token={WEBHOOK_TOKEN}", received)


def shop_dsn(postgres: PostgresServer, password: str) -> str:
    return password_dsn(postgres, shop_db.DATABASE, shop_db.REPLICATION_ROLE, password)


@dataclass(frozen=True)
class LineageSink:
    """Where the runs' lineage goes: the event file and an OpenLineage endpoint on 127.0.0.1."""

    file: Path
    requests: list[Request]


@pytest.fixture(scope="module")
def lineage_sink(module_dir: Path) -> Iterator[LineageSink]:
    with http_recorder() as (url, requests):
        sink = LineageSink(module_dir / "lineage" / "events.jsonl", requests)
        settings = {
            "ELT_LINEAGE_TRANSPORT": "file,http",
            "ELT_LINEAGE_FILE": str(sink.file),
            "ELT_LINEAGE_URL": url,
            "LINEAGE__API_KEY": LINEAGE_KEY,
        }
        with environment(settings):
            yield sink


@pytest.fixture(scope="module")
def sources(
    module_dir: Path, started: datetime, alerts: AlertChannel, lineage_sink: LineageSink
) -> Iterator[DemoSources]:
    workdir = module_dir
    Variable.set(INCIDENTS_VARIABLE, {}, overwrite=True)  # incidents opened by other modules' runs
    with demo_sources(workdir / "state", n_orders=N_ORDERS, durable=False) as demo:
        require_password(demo.postgres, shop_db.REPLICATION_ROLE, SHOP_PASSWORD)
        settings = {
            "ELT_DUCKDB_PATH": str(workdir / "warehouse.duckdb"),
            "SOURCES__SHOP__CREDENTIALS": shop_dsn(demo.postgres, SHOP_PASSWORD),
            "TRANSFORM__PII_SALT": PII_SALT,
            "ALERTS__WEBHOOK": alerts.url,
        }
        with environment(demo.environment() | settings):
            yield demo
    Variable.set(INCIDENTS_VARIABLE, {}, overwrite=True)


def counts(path: Path) -> dict[str, int]:
    with duckdb.connect(str(path), read_only=True) as con:
        return {table: con.execute(f"select count(*) from {table}").fetchone()[0] for table in COUNTED_TABLES}


def query(path: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(sql).fetchall()


def execute(path: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(path)) as con:
        return con.execute(sql).fetchall()


@dataclass(frozen=True)
class RunLineage:
    """The lineage one run sent: the event file's new lines and the endpoint's requests."""

    events: list[dict]
    requests: list[Request]


@pytest.fixture(scope="module")
def first_lineage() -> dict[str, RunLineage]:
    return {}


@pytest.fixture(scope="module")
def first_run(
    sources: DemoSources,
    evidence: list[Text],
    lineage_sink: LineageSink,
    first_lineage: dict[str, RunLineage],
) -> dict[str, int]:
    summary = elt()
    evidence.append(("first run's summary", repr(summary)))
    assert summary.ok, summary.error
    lines = lineage_sink.file.read_text().splitlines()
    first_lineage["run"] = RunLineage([json.loads(line) for line in lines], list(lineage_sink.requests))
    return counts(load_settings().duckdb_path)


def test_first_run_loads_raw_and_builds_marts(first_run: dict[str, int]) -> None:
    # GIVEN a fresh warehouse WHEN the flow runs THEN every raw and mart table has rows
    assert all(rows > 0 for rows in first_run.values()), first_run
    assert first_run["raw_shop.orders"] == N_ORDERS
    assert first_run["analytics_marts.fct_orders"] == N_ORDERS
    paid = query(
        load_settings().duckdb_path,
        "select count(*) from analytics_marts.fct_orders where payment_status = 'paid'",
    )[0][0]
    assert paid > N_ORDERS / 2


def test_every_lineage_event_round_trips_through_the_openlineage_classes(
    first_run: dict[str, int], first_lineage: dict[str, RunLineage]
) -> None:
    events = first_lineage["run"].events
    # THEN every event parses into the client's generated classes and serialises back unchanged
    assert events and all(round_trips(event) for event in events)
    # AND every facet carries its spec's schema URL
    assert all(url.startswith("https://openlineage.io/spec/") for url in schema_urls(events))
    # AND one flow run of `elt` is the parent of every event
    parents = {event["run"]["facets"]["parent"]["run"]["runId"] for event in events}
    assert len(parents) == 1
    assert asyncio.run(flow_name_of(parents.pop())) == "elt"
    # AND the run's jobs are all there: loads with statistics, dbt nodes with column lineage,
    # contracts with their assertions, publishing
    completed = {event["job"]["name"]: event for event in events if event["eventType"] == "COMPLETE"}
    charges = completed["dlt.stripe.charges"]["outputs"][0]
    assert charges["outputFacets"]["outputStatistics"]["rowCount"] > 0
    assert charges["outputFacets"]["outputStatistics"]["size"] > 0
    assert {"schema", "columnLineage"} <= charges["facets"].keys()
    payments = completed["dbt.model.elt.fct_payments"]["outputs"][0]
    amount = payments["facets"]["columnLineage"]["fields"]["amount"]["inputFields"]
    assert {field["name"].split(".", 1)[1] for field in amount} == {
        "analytics_staging.stg_stripe__charges",
        "analytics_staging.stg_stripe__refunds",
    }
    contract = completed["soda.analytics_marts_audit.fct_payments"]["inputs"][0]
    assert contract["inputFacets"]["dataQualityAssertions"]["assertions"]
    published = completed["publish.fct_payments"]
    assert published["outputs"][0]["name"].endswith("analytics_marts.fct_payments")
    assert published["inputs"][0]["name"].endswith("analytics_marts_audit.fct_payments")


def schema_urls(value: object) -> list[str]:
    """Every ``_schemaURL`` in an event, however deep."""
    if isinstance(value, dict):
        own = [value["_schemaURL"]] if "_schemaURL" in value else []
        return own + [url for item in value.values() for url in schema_urls(item)]
    if isinstance(value, list):
        return [url for item in value for url in schema_urls(item)]
    return []


async def flow_name_of(flow_run_id: str) -> str:
    async with get_client() as client:
        run = await client.read_flow_run(flow_run_id)
        return (await client.read_flow(run.flow_id)).name


def test_the_openlineage_endpoint_gets_the_same_events_with_the_api_key_and_no_other_secret(
    first_run: dict[str, int], first_lineage: dict[str, RunLineage]
) -> None:
    lineage = first_lineage["run"]
    # THEN the endpoint on 127.0.0.1 got exactly the events the file holds
    assert sorted(json.dumps(json.loads(r.body), sort_keys=True) for r in lineage.requests) == sorted(
        json.dumps(event, sort_keys=True) for event in lineage.events
    )
    # AND each request carried the API key, and nothing else secret
    assert {r.headers.get("Authorization") for r in lineage.requests} == {f"Bearer {LINEAGE_KEY}"}
    texts = [
        (
            f"lineage request {n}",
            r.path + json.dumps({k: v for k, v in r.headers.items() if k != "Authorization"}),
        )
        for n, r in enumerate(lineage.requests)
    ]
    texts += [(f"lineage request {n} body", r.body.decode()) for n, r in enumerate(lineage.requests)]
    assert leaks(texts, SECRETS) == []


def test_elt_lineage_follows_a_mart_column_to_the_stripe_charges_field(
    sources: DemoSources, first_run: dict[str, int]
) -> None:
    result = CliRunner().invoke(app, ["lineage", "analytics_marts.fct_payments.amount", "--upstream"])
    assert result.exit_code == 0, result.output
    lines = [line.strip("│└├─← ") for line in result.output.splitlines()]
    # THEN the tree goes from the published column through the audited mart and staging to
    # the raw table and the Stripe endpoint's field
    assert lines[0] == "analytics_marts.fct_payments.amount"
    for expected in (
        "analytics_marts_audit.fct_payments.amount  identity",
        "analytics_staging.stg_stripe__charges.amount  identity",
        "raw_stripe.charges.amount  transformation",
        f"{sources.stripe_url}/v1/charges field amount  identity",
    ):
        assert expected in lines, result.output


def test_status_shows_loads_contracts_and_slot_lag(first_run: dict[str, int]) -> None:
    # GIVEN the first run WHEN the on-call engineer asks for the status
    outcome = CliRunner().invoke(app, ["status", "--json"])
    assert outcome.exit_code == 0, outcome.output
    statuses = {entry["table"]: entry for entry in json.loads(outcome.output)}
    # THEN each raw table shows its rows, its contract verdict and, for CDC, the slot's lag
    orders = statuses["raw_shop.orders"]
    assert orders["rows"] == first_run["raw_shop.orders"]
    assert orders["contract"] == "passed"
    assert orders["slot_lag_bytes"] is not None and orders["slot_lag_bytes"] >= 0
    assert statuses["raw_stripe.charges"]["contract"] == "passed"
    assert statuses["raw_stripe.charges"]["slot_lag_bytes"] is None


@pytest.mark.skipif(
    shutil.which("chromium") is None,
    reason="Debian's chromium is not installed (apt-get install chromium; .ci/run installs it)",
)
def test_docs_show_a_marts_raw_tables_and_contract_in_a_real_browser(
    first_run: dict[str, int], tmp_path: Path, module_dir: Path
) -> None:
    # GIVEN the docs of this warehouse, served on 127.0.0.1 as `elt docs` serves them
    folder = generate_docs(load_settings(), tmp_path / "docs")
    server = serve_docs(folder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    site = f"http://127.0.0.1:{server.server_address[1]}"
    page = f"{site}/index.html#!/model/model.elt.fct_orders"
    screenshot = module_dir / "docs-fct_orders.png"
    browser = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=15000"]
    try:
        # WHEN a headless browser opens fct_orders' page
        rendered = run_browser([*browser, "--dump-dom", page])
        run_browser([*browser, "--window-size=1400,1800", f"--screenshot={screenshot}", page])
        contract = urllib.request.urlopen(f"{site}/contracts/marts/fct_orders.yml").read()
    finally:
        server.shutdown()
        server.server_close()
    # THEN the rendered page links every raw table the mart's data comes from, and its contract
    for raw in ("raw_shop.orders", "raw_shop.order_items", "raw_stripe.charges", "raw_stripe.refunds"):
        assert f'<a href="#!/source/source.elt.{raw}">{raw}</a>' in rendered, raw
    assert '<a href="contracts/marts/fct_orders.yml">checks/marts/fct_orders.yml</a>' in rendered
    assert b"dataset: warehouse/${var.MARTS_SCHEMA}/fct_orders" in contract
    # AND the screenshot of the page was saved
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and screenshot.stat().st_size > 20_000


def run_browser(command: list[str]) -> str:
    """Run headless Chromium; its output (the page's DOM for --dump-dom)."""
    done = subprocess.run(command, check=True, capture_output=True, text=True, timeout=120)
    return done.stdout


def test_rerun_on_fresh_worker_loads_nothing(first_run: dict[str, int]) -> None:
    # GIVEN a worker whose local dlt folders are gone (state must come from the warehouse)
    settings = load_settings()
    shutil.rmtree(settings.pipelines_dir)
    before = published_marts(settings.duckdb_path)
    # WHEN the flow runs over unchanged sources
    summary = elt()
    # THEN nothing is loaded, nothing is built, and every table keeps its rows
    assert summary.rows_loaded == 0, summary.table_rows()
    assert summary.dbt is None, summary.dbt
    assert summary.build_plan[0].startswith("dbt: nothing changed"), summary.build_plan
    assert counts(settings.duckdb_path) == first_run
    assert published_marts(settings.duckdb_path) == before


def test_elt_ci_builds_what_a_pull_request_changed_diffs_it_and_fails_on_its_contract(
    first_run: dict[str, int], tmp_path: Path
) -> None:
    # GIVEN production (a copy of this warehouse) and a pull request changing fct_orders
    # and stg_shop__products, in a real git repository
    warehouse, repo = pull_requests.production_copy(load_settings().duckdb_path, tmp_path)
    pull_requests.open_pull_request(repo)
    expected = pull_requests.expected_diffs(partial(query, warehouse), "analytics_marts", "raw_shop")
    assert expected["fct_orders"]["changed"] and expected["dim_products"]["changed"], expected
    # WHEN CI runs for it THEN it fails on the contract, builds and diffs what changed
    with environment({"ELT_DUCKDB_PATH": str(warehouse)}):
        pull_requests.assert_ci_caught_the_pull_request(repo, expected, [])
    # AND no CI schema is left
    assert (
        query(warehouse, "select schema_name from information_schema.schemata where schema_name like 'ci%'")
        == []
    )


def test_elt_dev_builds_an_edited_mart_into_dev_schemas_and_leaves_production_alone(
    first_run: dict[str, int], tmp_path: Path
) -> None:
    # GIVEN production (a copy) and a developer's working tree with fct_orders.sql edited
    warehouse, repo = pull_requests.production_copy(load_settings().duckdb_path, tmp_path)
    pull_requests.by_day_only(repo)
    before = table_checksums(warehouse)
    # WHEN the developer runs elt dev
    with environment({"ELT_DUCKDB_PATH": str(warehouse), "ELT_DEVELOPER": "Alice"}):
        outcome = CliRunner().invoke(app, ["dev", "--repo", str(repo)])
    assert outcome.exit_code == 0, outcome.output
    # THEN fct_orders and its children were built in dev_alice_*, as dbt's run results say
    assert models_built(repo / "transform/target/dev") == models_selected("fct_orders+")
    assert query(warehouse, "select count(*) from dev_alice_analytics_marts_audit.fct_orders") == [
        (N_ORDERS,)
    ]
    dev_orders = "dev_alice_analytics_marts_audit.fct_orders"
    by_day = f"select count(*) from {dev_orders} where ordered_at <> date_trunc('day', ordered_at)"
    assert query(warehouse, by_day) == [(0,)]
    # AND its unchanged parents were read from production: no dev staging was built
    schemas = {name for (name,) in query(warehouse, "select schema_name from information_schema.schemata")}
    assert {name for name in schemas if name.startswith("dev_")} == {"dev_alice_analytics_marts_audit"}
    # AND every production table is as it was
    assert table_checksums(warehouse) == before
    # AND cleaning up CI leftovers keeps the developer's schemas, unless asked for them too
    with environment({"ELT_DUCKDB_PATH": str(warehouse)}):
        ci_only = CliRunner().invoke(app, ["ci", "cleanup", "--older-than", "0m"])
        with_dev = CliRunner().invoke(app, ["ci", "cleanup", "--older-than", "0m", "--dev"])
    assert ci_only.exit_code == 0 and "0 schemas dropped" in ci_only.output, ci_only.output
    assert with_dev.exit_code == 0 and "dropped dev_alice_analytics_marts_audit" in with_dev.output, (
        with_dev.output
    )
    dev_schemas = "select schema_name from information_schema.schemata where schema_name like 'dev%'"
    assert query(warehouse, dev_schemas) == []


def table_checksums(path: Path) -> dict[str, tuple[int, int]]:
    """Rows and an order-independent checksum of every table outside dev, CI and scratch schemas,
    and outside the operator audit, where every command leaves its row (flows/operations.py)."""
    tables = query(
        path,
        "select table_schema, table_name from information_schema.tables where table_type = 'BASE TABLE'"
        " and table_schema not like 'dev\\_%' escape '\\' and table_schema not like 'ci\\_%' escape '\\'"
        " and table_schema <> 'elt_scratch'",
    )
    return {
        f"{schema}.{table}": query(
            path, f'select count(*), coalesce(sum(hash(t)), 0) from "{schema}"."{table}" as t'
        )[0]
        for schema, table in tables
        if f"{schema}.{table}" not in OPERATOR_AUDIT
    }


# the operator audit's table and the dlt bookkeeping its first row creates
OPERATOR_AUDIT = {"elt_audit.operations", "elt_audit._dlt_loads", "elt_audit._dlt_version"}


def test_new_charges_build_only_what_they_feed_and_the_marts_match_a_full_rebuild(
    sources: DemoSources, first_run: dict[str, int], tmp_path: Path
) -> None:
    path = load_settings().duckdb_path
    # GIVEN two failed payment attempts on placed orders: new Stripe charges, nothing else
    placed = query(
        path, "select order_id, order_total from analytics_marts.fct_orders where status = 'placed' limit 2"
    )
    rng, now = random.Random(11), int(time.time())
    sources.stripe.extend(
        "charges",
        [charge_object(rng, order, None, int(total * 100), now, "failed") for order, total in placed],
    )
    # WHEN the flow runs
    summary = elt()
    # THEN the load results name the charges (and the events that announce them) and dbt
    # built exactly the models downstream of those tables, as dbt itself selects them
    assert loaded_tables(summary) == ["raw_stripe.charges", "raw_stripe.events"]
    assert built_models(summary) == dbt_selects("source:raw_stripe.charges+ source:raw_stripe.events+")
    # AND every published mart equals a rebuild of everything from the raw tables
    assert mart_hashes(path, "analytics_marts") == full_rebuild_marts(path, tmp_path)


def test_a_cdc_delete_builds_only_what_it_feeds_and_the_marts_match_a_full_rebuild(
    sources: DemoSources, first_run: dict[str, int], tmp_path: Path
) -> None:
    path = load_settings().duckdb_path
    # GIVEN two abandoned orders deleted in the shop, with their items: deletes only
    with psycopg2.connect(sources.shop_admin_dsn) as conn, conn.cursor() as cur:
        cur.execute("select id from orders where status = 'placed' order by id desc limit 2")
        abandoned = [order for (order,) in cur.fetchall()]
        cur.execute("delete from order_items where order_id = any(%s)", (abandoned,))
        cur.execute("delete from orders where id = any(%s)", (abandoned,))
    conn.close()
    # WHEN the flow runs
    summary = elt()
    # THEN the deletes are the only rows loaded, and what they feed is all dbt built
    assert loaded_tables(summary) == ["raw_shop.order_items", "raw_shop.orders"]
    assert built_models(summary) == dbt_selects("source:raw_shop.orders+ source:raw_shop.order_items+")
    ids = ", ".join(map(str, abandoned))
    assert query(path, f"select count(*) from analytics_marts.fct_orders where order_id in ({ids})") == [(0,)]
    # AND every published mart equals a rebuild of everything from the raw tables
    assert mart_hashes(path, "analytics_marts") == full_rebuild_marts(path, tmp_path)


def loaded_tables(summary: RunSummary) -> list[str]:
    """``dataset.table`` of every table the run's loads brought rows to."""
    return sorted(f"{r.dataset}.{table}" for r in summary.ingests for table, rows in r.rows.items() if rows)


def built_models(summary: RunSummary) -> set[str]:
    assert summary.dbt is not None, summary.build_plan
    return {node.unique_id for node in summary.dbt.nodes if node.resource_type in ("model", "snapshot")}


def mart_hashes(path: Path, schema: str) -> dict[str, list[str]]:
    """Each mart's rows as sorted row hashes: equal means the same rows, value for value."""
    with duckdb.connect(str(path), read_only=True) as con:
        return {
            table: sorted(row_hash(row) for row in con.execute(f"select * from {schema}.{table}").fetchall())
            for table in PUBLISHED_MARTS
        }


def full_rebuild_marts(path: Path, workdir: Path) -> dict[str, list[str]]:
    """The marts as a rebuild of every model from scratch makes them, on a copy of the warehouse."""
    copy = workdir / "full-rebuild.duckdb"
    shutil.copy(path, copy)
    with environment({"ELT_DUCKDB_PATH": str(copy)}):
        run_dbt_build(
            ["--full-refresh", "--exclude", "resource_type:test", "resource_type:unit_test"],
            target_path=workdir / "target",
        )
    return mart_hashes(copy, "analytics_marts_audit")


def test_source_changes_load_exactly_the_changes(sources: DemoSources, first_run: dict[str, int]) -> None:
    path = load_settings().duckdb_path
    before = counts(path)
    # GIVEN new paid orders, updated customers, their Stripe charges, and deleted abandoned orders
    changes = change_the_sources(sources)
    # WHEN the flow runs
    summary = elt()
    # THEN exactly the changed rows are loaded (a delete is a row that removes its key)
    loaded = rows_loaded(summary)
    assert len(changes.deleted_orders) == 2
    assert loaded == expected_change_rows(changes)
    after = counts(path)
    assert after["raw_shop.orders"] == before["raw_shop.orders"] + 4 - 2
    assert after["raw_shop.customers"] == before["raw_shop.customers"]  # merged, not appended
    # AND the marts reflect them: new orders paid, moved customers versioned, deletes gone
    assert_marts_show_the_changes(lambda sql: query(path, sql), changes)
    assert_moved_customers_versioned(lambda sql: query(path, sql), changes)
    updated_ids = ", ".join(map(str, changes.updated_customers))
    addresses = query(
        path,
        "select count(distinct street_address_hash) from analytics_marts.dim_customers"
        f" where customer_id in ({updated_ids}) group by customer_id",
    )
    assert addresses == [(2,)] * 3
    # AND no personal data is readable in any published mart
    assert_no_raw_email_in_marts(path)


def assert_no_raw_email_in_marts(path: Path) -> None:
    """Every column of every published mart, read as text, holds nothing shaped like an email
    address; the same pattern does find the raw customers' emails, so the scan is not blind."""
    columns = query(
        path,
        "select table_name, column_name from information_schema.columns"
        " where table_schema = 'analytics_marts' order by all",
    )
    assert {table for table, _ in columns} >= set(PUBLISHED_MARTS)
    for table, column in columns:
        (clear,) = query(
            path,
            f"select count(*) from analytics_marts.{table}"
            f" where regexp_matches(cast(\"{column}\" as varchar), '{EMAIL_SQL}')",
        )[0]
        assert clear == 0, f"analytics_marts.{table}.{column} holds email addresses"
    (raw,) = query(
        path, f"select count(*) from raw_shop.customers where regexp_matches(email, '{EMAIL_SQL}')"
    )[0]
    assert raw > 0


PUBLISHED_MARTS = [
    "dim_customers",
    "dim_products",
    "fct_engineering_lead_times",
    "fct_order_items",
    "fct_orders",
    "fct_payments",
    "fct_revenue_daily",
]


def published_marts(path: Path) -> dict[str, list[tuple]]:
    """Every published mart's rows, in a stable order: equal means unchanged, value for value."""
    return {
        table: query(path, f"select * from analytics_marts.{table} order by all") for table in PUBLISHED_MARTS
    }


def failed_checks(summary: object) -> set[str]:
    return {
        f"{contract.dataset}: {check.describe()}"
        for contract in summary.contracts  # type: ignore[attr-defined]
        for check in contract.failed_checks
    }


def test_bad_raw_rows_fail_at_their_contract_and_leave_published_marts_untouched(
    sources: DemoSources, first_run: dict[str, int], evidence: list[Text]
) -> None:
    path = load_settings().duckdb_path
    before = published_marts(path)
    # GIVEN raw data with a duplicate charge, a negative refund and an order of unknown status
    with duckdb.connect(str(path)) as con:
        con.execute("insert into raw_stripe.charges select * from raw_stripe.charges limit 1")
        con.execute(
            "insert into raw_stripe.refunds select * replace ('re_bad' as id, -500 as amount)"
            " from raw_stripe.refunds limit 1"
        )
        con.execute(
            "update raw_shop.orders set status = 'lost' where id = (select min(id) from raw_shop.orders)"
        )
    # WHEN the flow runs THEN it stops at the raw contracts, naming table, check and value
    with pytest.raises(EltRunFailed) as failure:
        elt(sources=["shop", "stripe"])
    evidence += exception_texts(failure.value, "bad raw rows")
    assert failed_checks(failure.value.summary) == {
        "raw_stripe.charges: check 'duplicate id' failed (duplicate_count=1)",
        "raw_stripe.refunds: check 'invalid amount' failed (invalid_count=1)",
        "raw_shop.orders: check 'invalid status' failed (invalid_count=1)",
    }
    assert failure.value.summary.dbt is None  # nothing was built from them
    assert published_marts(path) == before
    with duckdb.connect(str(path)) as con:
        con.execute(
            "update raw_shop.orders set status = (select status from analytics_marts.fct_orders"
            " where order_id = raw_shop.orders.id) where status = 'lost'"
        )
        con.execute("delete from raw_stripe.refunds where id = 're_bad'")
        con.execute(
            "delete from raw_stripe.charges where rowid in (select max(rowid) from raw_stripe.charges"
            " group by id having count(*) > 1)"
        )


def test_a_mart_that_fails_its_rule_is_quarantined_and_published_only_once_it_passes(
    sources: DemoSources, first_run: dict[str, int], evidence: list[Text]
) -> None:
    path = load_settings().duckdb_path
    before = published_marts(path)
    # GIVEN a refund larger than its charge, from the API: every raw check passes, the
    # order's figures can't
    (charge_id, amount) = query(
        path, "select id, amount from raw_stripe.charges where status = 'succeeded' and amount_refunded = 0"
    )[0]
    refund = {"id": "re_too_big", "object": "refund", "charge": charge_id, "amount": amount * 2}
    refund |= {"currency": "usd", "created": int(time.time()), "status": "succeeded"}
    sources.stripe.add("refunds", refund)
    # WHEN the flow runs THEN the audited fct_orders fails its business rule
    with pytest.raises(EltRunFailed) as failure:
        elt(sources=["stripe"])
    evidence += exception_texts(failure.value, "mart rule")
    summary = failure.value.summary
    assert failed_checks(summary) == {
        "analytics_marts_audit.fct_orders: "
        "check 'failed_rows: refunds never exceed payments' failed (failed_rows_count=1)"
    }
    # AND it is not published, nor the marts built from it; the mart that passed is
    held_back = ["dim_customers", "fct_orders", "fct_revenue_daily"]
    assert summary.published == ["fct_payments"]
    assert {table: published_marts(path)[table] for table in held_back} == {
        table: before[table] for table in held_back
    }
    # AND the failing build is kept for inspection
    kept = query(
        path,
        "select table_name from information_schema.tables"
        " where table_schema = 'analytics_marts_quarantine' and table_name like 'fct_orders__%'",
    )
    assert len(kept) == 1
    (bad,) = query(
        path,
        f"select count(*) from analytics_marts_quarantine.{kept[0][0]} where amount_refunded > amount_paid",
    )[0]
    assert bad == 1
    # WHEN a later run builds and publishes another source's marts
    github = elt(sources=["github"], full_build=True)
    # THEN the failed fct_orders, still in the audit schema, is not among them
    assert github.published == ["fct_engineering_lead_times"]
    assert {table: published_marts(path)[table] for table in held_back} == {
        table: before[table] for table in held_back
    }
    # WHEN the refund is corrected at the source THEN the next run rebuilds, checks and
    # publishes fct_orders and what was held back with it
    sources.stripe.update("refunds", "re_too_big", amount=1)
    fixed = elt(sources=["stripe"])
    assert set(held_back) <= set(fixed.published), fixed.published
    refunded = query(
        path,
        "select o.amount_refunded from analytics_marts.fct_orders as o"
        " join analytics_staging.stg_stripe__charges as c using (order_id)"
        f" where c.charge_id = '{charge_id}'",
    )
    assert refunded == [(Decimal("0.01"),)]


def test_forget_erases_a_customer_everywhere_and_no_reload_brings_them_back(
    sources: DemoSources, first_run: dict[str, int], evidence: list[Text]
) -> None:
    settings = load_settings()
    path = settings.duckdb_path
    started = datetime.now(UTC)
    # GIVEN a customer in the shop and in Stripe, loaded three times (three snapshot
    # versions), in every mart, in the rejected records and in a quarantined copy of marts
    person = add_person(sources)
    add_person(sources, KILLED_MIDWAY)  # forgotten by a later test
    load_three_versions(sources, person, run_sources)
    quarantine_marts()
    hashes = query(
        path, f"select email_hash from analytics_marts.dim_customers where customer_id = {person.shop_id}"
    )
    needles = person.needles(hashes[0][0])
    views = {f"{schema}.{name}" for schema, name in query(path, VIEWS)}
    holding = {where for where, _ in found(warehouse_texts(path), needles)} - views
    assert holding >= HOLDING, holding
    assert person.stripe_id.encode() in path.read_bytes()
    revenue = published_marts(path)["fct_revenue_daily"]
    # WHEN everything held about them is exported, asked for by their shop customer id
    exported = CliRunner().invoke(app, ["privacy", "export", "--subject", f"shop_customer:{person.shop_id}"])
    assert exported.exit_code == 0, exported.output
    document = json.loads(exported.stdout)
    # THEN it is exactly their rows, in every table that holds them, as a text search finds them
    assert document["identifiers"] == {
        "email": [person.email.lower()],
        "shop_customer": [str(person.shop_id)],
        "stripe_customer": [person.stripe_id],
    }
    exported_rows = {table["table"]: table["rows"] for table in document["tables"]}
    assert set(exported_rows) == holding
    assert {table: len(rows) for table, rows in exported_rows.items()} == {
        table: rows_mentioning(path, table, needles) for table in holding
    }
    assert exported_rows["raw_shop.customers"][0]["street_address"] == "3 Erasure Lane"
    # WHEN the person is forgotten, asked for by email as someone typed it
    evidence.append(("elt privacy forget output", forget(person)))
    # THEN no table of the warehouse holds their email, ids or mart hash, nor do the file's
    # freed blocks, dlt's working folders, the logs or the runs' Prefect logs, artifacts and
    # parameters
    assert found(warehouse_texts(path), needles) == []
    assert person.stripe_id.encode() not in path.read_bytes()
    assert found(file_texts(settings.pipelines_dir, data_dir() / "logs"), needles) == []
    assert found(prefect_texts(flow_run_ids_since(started)), needles) == []
    # AND the revenue marts did not change: the payments stay, without the person
    assert published_marts(path)["fct_revenue_daily"] == revenue
    # AND the proof names every place, rows before and after, the person only as a keyed hash
    assert_proof(last_proof(partial(query, path)), holding, versions=3)
    # AND the operator audit has both commands, the person only as keyed hashes
    operations = query(
        path, "select command, arguments from elt_audit.operations where command like 'privacy%'"
    )
    assert [command for command, _ in operations] == ["privacy export", "privacy forget"]
    assert all(re.search(r'"(shop_customer|email):[0-9a-f]{64}"', arguments) for _, arguments in operations)
    # WHEN the shop is re-snapshotted and Stripe read again from the start, each run
    # counting the rows it kept out THEN the person is still nowhere
    reload_everything(partial(execute, path), settings.pipelines_dir, run_sources)
    assert found(warehouse_texts(path), needles) == []
    assert published_marts(path)["fct_revenue_daily"] == revenue


def run_sources(sources: list[str]) -> RunSummary:
    summary = elt(sources=sources)
    assert summary.ok, summary.error
    return summary


def test_forget_refuses_an_unknown_kind_and_proves_a_search_that_found_no_one(
    sources: DemoSources, first_run: dict[str, int]
) -> None:
    path = load_settings().duckdb_path
    unknown = CliRunner().invoke(app, ["privacy", "forget", "--subject", "phone:+49 30 1234567"])
    assert unknown.exit_code == 1
    assert unknown.output.strip().splitlines() == [
        "error: unknown subject kind 'phone' (--subject); the kinds are email, shop_customer, stripe_customer"
    ]
    nobody = CliRunner().invoke(app, ["privacy", "forget", "--subject", "email:nobody.here@example.com"])
    assert nobody.exit_code == 0, nobody.output
    assert "nothing held about this person: nothing erased" in nobody.output
    request = re.search(r"request_id = '([^']+)'", nobody.output).group(1)
    rows = query(
        path,
        "select subject_rows_before, subject_rows_after from elt_audit.erasures"
        f" where request_id = '{request}'",
    )
    assert len(rows) > 10 and set(rows) == {(0, 0)}


def test_a_forget_killed_midway_completes_when_run_again_and_no_mart_is_half_erased(
    sources: DemoSources, first_run: dict[str, int]
) -> None:
    path = load_settings().duckdb_path
    # GIVEN another person in every mart (loaded with the first one, above)
    person = KILLED_MIDWAY
    before = person_rows_in_marts(path, person)
    assert all(before.values()), before
    # WHEN their erasure is killed (SIGKILL) at a random moment after it found them
    logs = data_dir() / "logs"
    seen = set(logs.glob("*.log"))
    forget = subprocess.Popen(
        [ELT, "privacy", "forget", "--subject", person.subject],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_log_line(logs, seen, "places in the map", forget)
    time.sleep(random.uniform(0, 4))
    forget.kill()
    forget.wait()
    # THEN each published mart holds all of the person's rows or none of them
    after_kill = person_rows_in_marts(path, person)
    assert all(after_kill[mart] in (0, before[mart]) for mart in before), (before, after_kill)
    # AND the same command, run again, erases them everywhere
    again = CliRunner().invoke(app, ["privacy", "forget", "--subject", person.subject])
    assert again.exit_code == 0, again.output
    assert found(warehouse_texts(path), person.needles()) == []


KILLED_MIDWAY = Person("Kill.Me.Midway@example.com", 876_543_219, "cus_privacyKillMe0002")
VIEWS = "select table_schema, table_name from information_schema.tables where table_type = 'VIEW'"
ELT = str(Path(sys.executable).with_name("elt"))


def rows_mentioning(path: Path, table: str, needles: list[str]) -> int:
    """Rows of ``table`` whose text (every column, as DuckDB prints a row) holds a needle."""
    schema, name = table.split(".", 1)
    condition = " or ".join(["contains(lower(cast(t as varchar)), ?)"] * len(needles))
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(
            f'select count(*) from "{schema}"."{name}" as t where {condition}', needles
        ).fetchone()[0]


def person_rows_in_marts(path: Path, person: Person) -> dict[str, int]:
    """Per published mart naming shop customers: the person's rows (by their shop id)."""
    return {
        mart: query(
            path, f"select count(*) from analytics_marts.{mart} where customer_id = {person.shop_id}"
        )[0][0]
        for mart in ("dim_customers", "fct_orders", "fct_order_items", "fct_payments")
    }


def wait_for_log_line(
    logs: Path, seen: set[Path], line: str, process: subprocess.Popen, timeout: float = 120
) -> None:
    """Until a new log file in ``logs`` has ``line`` (the process must still be running)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the forget ended before it could be killed"
        if any(line in log.read_text(errors="replace") for log in set(logs.glob("*.log")) - seen):
            return
        time.sleep(0.1)
    raise AssertionError(f"no {line!r} in a new log of {logs} after {timeout}s")


def test_unreachable_source_fails_with_one_line_and_touches_nothing(
    sources: DemoSources, first_run: dict[str, int], monkeypatch: pytest.MonkeyPatch, evidence: list[Text]
) -> None:
    path = load_settings().duckdb_path
    before = counts(path)
    # GIVEN the shop database URL points at a port nobody listens on, and no retries
    monkeypatch.setenv("SOURCES__SHOP__CREDENTIALS", "postgresql://elt_reader@127.0.0.1:9/shop")
    monkeypatch.setenv("ELT_INGEST_RETRIES", "0")
    # WHEN the flow runs through the CLI
    result = CliRunner().invoke(app, ["run", "--source", "shop"])
    evidence.append(("elt run output", result.output))
    # THEN it exits non-zero with one line naming the source and its setting
    assert result.exit_code == 1
    error_lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1, result.output
    assert "source shop" in error_lines[0]
    assert "sources.shop.credentials" in error_lines[0]
    # AND nothing already loaded changed
    assert counts(path) == before
    with pytest.raises(EltRunFailed) as failure:
        elt(sources=["shop"])
    evidence += exception_texts(failure.value, "unreachable")


def test_wrong_credentials_fail_at_ingest_naming_each_source_and_alert_once(
    sources: DemoSources,
    first_run: dict[str, int],
    alerts: AlertChannel,
    evidence: list[Text],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = load_settings().duckdb_path
    before = counts(path)
    sent = len(alerts.messages)
    # GIVEN a wrong password for the shop's replication role and a revoked Stripe key, no retries
    monkeypatch.setenv("SOURCES__SHOP__CREDENTIALS", shop_dsn(sources.postgres, WRONG_SHOP_PASSWORD))
    monkeypatch.setenv("SOURCES__STRIPE__API_KEY", WRONG_STRIPE_KEY)
    monkeypatch.setenv("ELT_INGEST_RETRIES", "0")
    # WHEN the flow runs
    with pytest.raises(EltRunFailed) as failure:
        elt(sources=["shop", "stripe"])
    evidence += exception_texts(failure.value, "wrong credentials")
    # THEN it stops at ingest naming the source, touches nothing, and sends one alert
    summary = failure.value.summary
    assert summary.failed_stage == "ingest" and summary.dbt is None
    assert "shop" in summary.error, summary.error
    assert counts(path) == before
    assert len(alerts.messages) == sent + 1, alerts.messages[sent:]


def elt_runs_since(started: datetime) -> list[tuple[str, list[str]]]:
    """This module's ``elt`` flow runs: (flow run id, the sources it was asked to load)."""
    runs = FlowRunFilter(id=FlowRunFilterId(any_=flow_run_ids_since(started)))
    with get_client(sync_client=True) as client:
        found = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["elt"])), flow_run_filter=runs
        )
    return [(str(run.id), list(run.parameters.get("sources") or SOURCES)) for run in found]


def test_every_load_of_every_run_has_an_audit_row_per_table(
    sources: DemoSources, first_run: dict[str, int], started: datetime
) -> None:
    # GIVEN the runs above: loaded, unchanged, changed, failed at a contract, at a credential
    path = load_settings().duckdb_path
    runs = elt_runs_since(started)
    assert len(runs) >= 2
    tables = {
        source: {
            table
            for (table,) in query(
                path,
                "select table_name from information_schema.tables"
                f" where table_schema = 'raw_{source}' and not starts_with(table_name, '_')",
            )
        }
        for source in SOURCES
    }
    outcomes = set()
    for run_id, asked in runs:
        rows = query(
            path, f"select source, table_name, outcome, error from elt_audit.loads where run_id = '{run_id}'"
        )
        # THEN each source of each run has one row per raw table when it loaded (0 rows
        # included), or one row with the error when it failed
        for source in asked:
            mine = [row for row in rows if row[0] == source]
            outcome = {row[2] for row in mine}
            assert outcome in ({LOADED}, {FAILED}), (run_id, source, mine)
            if outcome == {LOADED}:
                # bookkeeping tables (dlt's, rejected records: `_…`) aside
                audited = {table for _, table, _, _ in mine if not (table or "").startswith("_")}
                assert audited == tables[source], (run_id, source)
            else:
                [(_, table, _, error)] = mine
                assert table is None and error, (run_id, source, mine)
            outcomes |= outcome
        assert {row[0] for row in rows} == set(asked)
    assert outcomes == {LOADED, FAILED}


def test_no_secret_in_any_log_artifact_alert_exception_file_or_table(
    sources: DemoSources,
    first_run: dict[str, int],
    alerts: AlertChannel,
    evidence: list[Text],
    started: datetime,
    lineage_sink: LineageSink,
) -> None:
    # GIVEN the runs above, with known secret values, failing ones among them
    settings = load_settings()
    texts = list(evidence)
    texts += [(f"alert to {place}", subject + text) for place, subject, text in alerts.messages]
    texts += prefect_texts(flow_run_ids_since(started))
    texts += file_texts(settings.pipelines_dir, *dbt_folders(), lineage_sink.file.parent)
    warehouse = warehouse_texts(settings.duckdb_path)
    texts += [(where, text) for where, text in warehouse if where != "restricted.pii_salt"]
    # THEN the scan can see a secret where one belongs: the salt in its restricted table
    assert PII_SALT in dict(warehouse)["restricted.pii_salt"]
    assert alerts.messages and any(where.startswith("log ") for where, _ in texts)
    assert any("dbt.log" in where for where, _ in texts) and any("trace" in where for where, _ in texts)
    # AND no log line, artifact, state message, Prefect Variable, alert, exception, dlt or dbt
    # file, nor any other warehouse table holds one
    assert leaks(texts, SECRETS) == []


def test_no_raw_email_in_published_marts_dbt_artifacts_or_logs(
    sources: DemoSources, first_run: dict[str, int], started: datetime
) -> None:
    path = load_settings().duckdb_path
    assert_no_raw_email_in_marts(path)
    # every customer email the sources delivered, as loaded into raw
    emails = {email.lower() for (email,) in query(path, "select email from raw_shop.customers")}
    emails |= {email.lower() for (email,) in query(path, "select email from raw_stripe.customers") if email}
    assert len(emails) > 100
    texts = file_texts(*dbt_folders()) + prefect_texts(flow_run_ids_since(started))
    assert any(where.endswith("manifest.json") for where, _ in texts)
    # THEN none reached dbt's compiled SQL, manifest, run results or logs, nor a Prefect log line
    assert emails_in(texts, emails) == []
