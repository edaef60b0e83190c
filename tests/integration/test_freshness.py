"""Freshness SLAs for real: Stripe loads (the stand-in on 127.0.0.1, dlt into DuckDB)
recorded in the warehouse's audit table, the ``freshness`` flow reading it, alerts to a
webhook receiver on 127.0.0.1 — one alert per breach, one resolved message after the
next good load."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from prefect import flow
from prefect.variables import Variable

from flows.alerts import INCIDENTS_VARIABLE
from flows.audit import last_successful_loads
from flows.config import ConfigError, load_settings
from flows.freshness import freshness, parse_duration
from flows.ingest import ingest_sources
from flows.results import IngestResult
from standins.stripe_api import StripeStore, serve_stripe
from tests.support.receivers import Received, webhook_receiver
from tests.support.stripe import API_KEY, seed

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]

SLA_S = 4


@flow(name="load-stripe")
def load_stripe() -> list[IngestResult]:
    return ingest_sources(["stripe"], load_settings(), run_id="freshness-test")


@pytest.fixture
def received(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Received]:
    monkeypatch.setenv("ELT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ELT_DUCKDB_PATH", str(tmp_path / "warehouse.duckdb"))
    monkeypatch.setenv("SOURCES__STRIPE__API_KEY", API_KEY)
    slas = tmp_path / "freshness.yml"
    # the source's tables get seconds; charges has its own, longer SLA
    slas.write_text(f"stripe:\n  default: {SLA_S}s\n  tables:\n    charges: 1h\n")
    monkeypatch.setenv("ELT_FRESHNESS_FILE", str(slas))
    Variable.set(INCIDENTS_VARIABLE, {}, overwrite=True)
    with serve_stripe(seed(StripeStore()), API_KEY) as url, webhook_receiver() as (hooks, received):
        monkeypatch.setenv("SOURCES__STRIPE__BASE_URL", url)
        monkeypatch.setenv("ALERTS__WEBHOOK", f"{hooks}/oncall")
        yield received


def test_a_breach_alerts_once_and_the_next_good_load_resolves_it(received: Received) -> None:
    # GIVEN a fresh load of the source
    load_stripe()
    assert [r.breached for r in freshness()] == [False, False]
    assert received.messages == []
    # WHEN its SLA passes without another load
    time.sleep(SLA_S + 0.5)
    results = freshness()
    # THEN the tables under the short SLA breach, with one alert; charges (1h) does not
    assert [(r.table, r.breached) for r in results] == [("*", True), ("charges", False)]
    [(subject, body)] = received.on("/oncall")
    assert subject == "ELT freshness SLA breached: raw_stripe.*"
    assert "raw_stripe.*: last loaded" in body and f"SLA {SLA_S}s" in body
    # AND checking again while it lasts stays quiet
    freshness()
    assert len(received.messages) == 1
    # WHEN the source loads again THEN one resolved message follows
    load_stripe()
    assert [r.breached for r in freshness()] == [False, False]
    assert [subject for subject, _ in received.on("/oncall")][1:] == [
        "RESOLVED: ELT freshness SLA breached: raw_stripe.*"
    ]


def test_every_load_is_in_the_audit_table(received: Received) -> None:
    results = load_stripe()
    settings = load_settings()
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        rows = con.execute(
            "select table_name, rows, outcome from elt_audit.loads where run_id = 'freshness-test' order by 1"
        ).fetchall()
    assert rows == sorted((table, results[0].rows.get(table, 0), "loaded") for table in results[0].tables)
    assert {"charges", "customers", "events"} <= {table for table, _, _ in rows}
    assert set(last_successful_loads(settings)) == {"stripe"}


def test_durations_are_checked() -> None:
    assert parse_duration("90m", "x").total_seconds() == 5400
    with pytest.raises(ConfigError, match=r"shop\.default='soon' is not a duration"):
        parse_duration("soon", "shop.default")


def test_status_lists_every_table_with_its_load_and_freshness(received: Received) -> None:
    from typer.testing import CliRunner

    from flows.cli import app

    results = load_stripe()
    outcome = CliRunner().invoke(app, ["status", "--json"])
    assert outcome.exit_code == 0, outcome.output
    statuses = {entry["table"]: entry for entry in json.loads(outcome.output)}
    charges = statuses["raw_stripe.charges"]
    assert charges["rows"] == results[0].rows["charges"] > 0
    assert charges["freshness"].startswith("ok (raw_stripe.charges: last loaded")
    assert statuses["raw_stripe.customers"]["freshness"].startswith("ok (raw_stripe.*: last loaded")
    assert charges["contract"] == "-" and charges["slot_lag_bytes"] is None
    table = CliRunner().invoke(app, ["status"], env={"COLUMNS": "200"})
    assert table.exit_code == 0 and "raw_stripe.charges" in table.output
