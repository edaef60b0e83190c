"""A source that suddenly sends 40% of its usual rows, through the real per-source flow.

The tickets API stand-in (standins/rest_api.py) on 127.0.0.1, dlt into a DuckDB file, the
raw contracts, then the flow's observe stage: profiles and anomaly checks against a
history of 35 daily loads of about 100 tickets (written to the real audit table), with a
webhook alert channel on 127.0.0.1. In order: a usual load (quiet) → 40% of it (a warning
naming the table and metric, one alert) → usual again (one resolved message) → 40% with
``anomalies.fail_run`` (the run fails naming them, one alert) → ``elt anomalies ack`` →
40% again (accepted: the run passes, the incident is resolved).
"""

from __future__ import annotations

import getpass
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prefect.variables import Variable
from typer.testing import CliRunner

from flows.alerts import INCIDENTS_VARIABLE
from flows.anomalies import latest_verdicts
from flows.audit import LOADED, LoadRecord, query_audit, record
from flows.cli import app
from flows.config import environment, load_settings
from flows.elt import EltRunFailed
from flows.ingest_source import ingest_source
from flows.report import RunSummary
from standins import DEMO_TICKETS_TOKEN
from standins.rest_api import TicketStore, iso, serve_tickets, ticket
from tests.support.receivers import Received, webhook_receiver

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("prefect_harness")]

SOURCE, TABLE = "example_tickets", "raw_example_tickets.tickets"
USUAL = 100  # tickets a load brings
HISTORY_DAYS = 35
NOISE = 0.05  # the history's coefficient of variation


@dataclass
class Scenario:
    store: TicketStore
    received: Received
    added: int = USUAL
    last_stamp: int = 0

    def send(self, count: int) -> None:
        """``count`` new tickets, each stamped later than every earlier one."""
        stamp = max(int(time.time()), self.last_stamp + 1)
        self.store.upsert({**ticket(self.added + i), "updated_at": iso(stamp + i)} for i in range(count))
        self.added, self.last_stamp = self.added + count, stamp + count


@pytest.fixture(scope="module")
def scenario(module_dir: Path) -> Iterator[Scenario]:
    Variable.set(INCIDENTS_VARIABLE, {}, overwrite=True)  # other modules' incidents are not these
    now = datetime.now(UTC)
    store = TicketStore(USUAL, int((now - timedelta(hours=1)).timestamp()))
    with webhook_receiver() as (hooks_url, received), serve_tickets(store, DEMO_TICKETS_TOKEN) as api_url:
        settings = {
            "ELT_DUCKDB_PATH": str(module_dir / "warehouse.duckdb"),
            "SOURCES__EXAMPLE_TICKETS__BASE_URL": api_url,
            "SOURCES__EXAMPLE_TICKETS__TOKEN": DEMO_TICKETS_TOKEN,
            "ALERTS__WEBHOOK": f"{hooks_url}/oncall",
            "ELT_LINEAGE_TRANSPORT": "none",
        }
        with environment(settings):
            seed_daily_history(now)
            yield Scenario(store, received, last_stamp=int(now.timestamp()))
    Variable.set(INCIDENTS_VARIABLE, {}, overwrite=True)


def seed_daily_history(now: datetime) -> None:
    """35 daily loads of about ``USUAL`` tickets before today, at this time of day."""
    noise = random.Random(17)
    loads = []
    for day in range(HISTORY_DAYS, 0, -1):
        finished = now - timedelta(days=day)
        rows = round(USUAL * (1 + noise.gauss(0, NOISE)))
        dataset, table = TABLE.split(".")
        loads.append(
            LoadRecord(f"history-{day}", SOURCE, dataset, table, rows, finished - timedelta(minutes=1),
                       finished, LOADED)
        )  # fmt: skip
    record(load_settings(), "loads", loads)


def run_source() -> RunSummary:
    return ingest_source(source=SOURCE)


def flagged(summary: RunSummary) -> list[str]:
    return [f"{a.dataset}.{a.table_name} {a.metric}" for a in summary.anomalies]


def test_a_usual_load_is_quiet(scenario: Scenario) -> None:
    summary = run_source()
    # THEN its rows are judged against the history, in band, and nobody is alerted
    assert summary.rows_loaded == USUAL
    verdicts = {v.metric: v for v in latest_verdicts(load_settings()) if v.table_name == "tickets"}
    assert verdicts["rows_per_load"].level == "ok"
    assert f"{TABLE} rows_per_load" not in flagged(summary)
    assert scenario.received.messages == []


def test_forty_percent_of_the_usual_rows_warns_naming_the_table_and_metric_with_one_alert(
    scenario: Scenario,
) -> None:
    scenario.send(round(USUAL * 0.4))
    summary = run_source()
    # THEN the run passes with a warning naming the table and the metric, and its band
    assert summary.ok and summary.rows_loaded == round(USUAL * 0.4)
    assert f"{TABLE} rows_per_load" in flagged(summary)
    assert any(TABLE in w and "rows_per_load = 40" in w for w in summary.warnings), summary.warnings
    assert "## Anomalies" in summary.to_markdown()
    # AND one alert went out, naming them
    ((path, subject, text),) = scenario.received.messages
    assert path == "/oncall" and TABLE in subject and "rows_per_load" in subject
    assert "expected" in text and "band" in text


def test_back_to_normal_sends_one_resolved_message(scenario: Scenario) -> None:
    scenario.send(USUAL)
    summary = run_source()
    assert summary.ok and not flagged(summary)
    # THEN the band did not learn from the flagged load, and the incident is resolved once
    subjects = [subject for _, subject, _ in scenario.received.messages]
    assert subjects[1:] == [f"RESOLVED: {subjects[0]}"]


def test_with_fail_run_set_the_drop_fails_the_run_with_one_alert_until_acknowledged(
    scenario: Scenario,
) -> None:
    scenario.send(round(USUAL * 0.4))
    with environment({"ANOMALIES__FAIL_RUN": "true"}), pytest.raises(EltRunFailed) as failed:
        run_source()
    # THEN the run fails at its observe stage, naming the table and the metric
    summary = failed.value.summary
    assert summary.failed_stage == "observe"
    assert TABLE in (summary.error or "") and "rows_per_load" in (summary.error or "")
    # AND its profiles and verdicts are recorded all the same
    verdicts = {v.metric: v for v in latest_verdicts(load_settings()) if v.table_name == "tickets"}
    assert verdicts["rows_per_load"].level == "fail" and verdicts["rows_per_load"].value == 40
    # AND one alert (the failed run's) names them
    new = scenario.received.messages[2:]
    assert len(new) == 1 and "failed at stage observe" in new[0][1]
    assert TABLE in new[0][2] and "rows_per_load" in new[0][2]
    # WHEN someone accepts the new level, and the next load is as small
    result = CliRunner().invoke(
        app, ["anomalies", "ack", TABLE, "rows_per_load", "--note", "the helpdesk moved half its queue"]
    )
    assert result.exit_code == 0, result.output
    scenario.send(round(USUAL * 0.4))
    with environment({"ANOMALIES__FAIL_RUN": "true"}):
        summary = run_source()
    # THEN it is judged against the accepted level: the run passes and the incident is resolved
    assert summary.ok and not flagged(summary)
    assert [subject for _, subject, _ in scenario.received.messages[3:]] == [f"RESOLVED: {new[0][1]}"]
    # AND the acknowledgement is in the audit, with who made it and why
    acks = query_audit(
        load_settings(), "anomaly_acks", "select table_name, metric, acked_by, note from {table}"
    )
    assert acks == [("tickets", "rows_per_load", getpass.getuser(), "the helpdesk moved half its queue")]
