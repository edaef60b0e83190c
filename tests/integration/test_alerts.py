"""Alerts of the real ELT flow, delivered to real local channels: a Slack-compatible webhook,
a generic webhook and an SMTP server on 127.0.0.1.

One shared scenario, in order: transient failures that retries absorb (no alert, no
duplicate rows) → a permanent failure (no retries, one alert per channel, no secret) →
the same failure again (same incident, no alert) → a good run (one resolved message).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest
from prefect import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.settings import PREFECT_UI_URL, temporary_settings
from prefect.variables import Variable
from receivers import Received, smtp_receiver, webhook_receiver

from flows.alerts import INCIDENTS_VARIABLE
from flows.config import environment
from flows.elt import elt
from standins import (
    DEMO_GITHUB_TOKEN,
    DEMO_STRIPE_KEY,
    DEMO_TICKETS_TOKEN,
    DemoSources,
    demo_sources,
)
from tests.secret_scan import leaks, prefect_texts

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("prefect_harness")]

N_ORDERS = 200
WEBHOOK_TOKEN = "hook-token-5ecret-abcdef"
WRONG_KEY = "sk_test_wrong_key_never_shown_0123"
UI_URL = "http://127.0.0.1:4200"
CHANNELS = ("/slack", "/generic", "oncall@example.com")


@dataclass
class Scenario:
    demo: DemoSources
    received: Received
    warehouse: Path


@pytest.fixture(scope="module")
def scenario(module_dir: Path) -> Iterator[Scenario]:
    workdir = module_dir
    Variable.set(INCIDENTS_VARIABLE, {}, overwrite=True)  # other tests' failed runs announced nothing here
    with (
        webhook_receiver() as (hooks_url, received),
        smtp_receiver() as (smtp_port, mail),
        demo_sources(workdir / "state", n_orders=N_ORDERS, durable=False) as demo,
    ):
        mail.messages = received.messages  # one list: every channel's messages in arrival order
        settings = {
            "ELT_DUCKDB_PATH": str(workdir / "warehouse.duckdb"),
            "ALERTS__SLACK_WEBHOOK": f"{hooks_url}/slack?token={WEBHOOK_TOKEN}",
            "ALERTS__WEBHOOK": f"{hooks_url}/generic?token={WEBHOOK_TOKEN}",
            "ALERTS__EMAIL": (
                f"mailto://example.com?smtp=127.0.0.1&port={smtp_port}"
                "&from=elt@example.com&to=oncall@example.com"
            ),
            # every failed request fails the task attempt; the task's retries come at once
            "SOURCES__STRIPE__MAX_RETRIES": "0",
            "ELT_RETRY_DELAY_SECONDS": "0",
        }
        with environment(demo.environment() | settings), temporary_settings({PREFECT_UI_URL: UI_URL}):
            yield Scenario(demo, received, workdir / "warehouse.duckdb")


def ingest_run_counts(state: Any) -> dict[str, int]:
    """How often each ingest task of the flow run ran (1 = no retry)."""
    this_run = FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=this_run)
    return {run.name: run.run_count for run in runs if run.name.startswith("ingest-")}


def flow_run_name(state: Any) -> str:
    with get_client(sync_client=True) as client:
        return client.read_flow_run(state.state_details.flow_run_id).name


def test_transient_failures_are_retried_without_an_alert_or_a_duplicate(scenario: Scenario) -> None:
    # GIVEN the Stripe API answers the next two requests with 503
    scenario.demo.stripe.fail_next(2, status=503)
    # WHEN the ELT runs
    state = elt(return_state=True)
    # THEN the stripe ingest failed twice, succeeded on its third attempt, and the run completed
    assert state.is_completed(), state.message
    assert ingest_run_counts(state)["ingest-stripe"] == 3
    assert scenario.received.messages == []
    # AND every charge is in the warehouse exactly once
    with duckdb.connect(str(scenario.warehouse), read_only=True) as con:
        rows, ids = con.execute("select count(*), count(distinct id) from raw_stripe.charges").fetchone()
    assert rows == ids == scenario.demo.stripe.count("charges")


def test_a_permanent_failure_alerts_once_on_every_channel_without_secrets(scenario: Scenario) -> None:
    # GIVEN a revoked Stripe key (401: retrying can't help)
    with environment({"SOURCES__STRIPE__API_KEY": WRONG_KEY}):
        state = elt(return_state=True)
    # THEN the run failed without retrying the ingest
    assert state.is_failed()
    assert ingest_run_counts(state)["ingest-stripe"] == 1
    # AND each channel got exactly one message naming the run, its link, the stage, the source
    # and the first error line, and holding no secret
    run_name = flow_run_name(state)
    for channel in CHANNELS:
        [(subject, text)] = scenario.received.on(channel)
        # a Slack-compatible payload has no subject field: the subject is its first line
        assert "ELT flow elt failed at stage ingest" in subject + text, channel
        assert f"flow run: {run_name} {UI_URL}/runs/flow-run/{state.state_details.flow_run_id}" in text
        assert "stage: ingest" in text
        assert "error: ingest: stripe source:" in text and "HTTP 401" in text, text
    for _, subject, text in scenario.received.messages:
        for secret in (WRONG_KEY, WEBHOOK_TOKEN):
            assert secret not in subject + text


def test_the_same_failure_again_is_the_same_incident(scenario: Scenario) -> None:
    before = len(scenario.received.messages)
    with environment({"SOURCES__STRIPE__API_KEY": WRONG_KEY}):
        assert elt(return_state=True).is_failed()
    assert len(scenario.received.messages) == before


def test_recovery_sends_one_resolved_message(scenario: Scenario) -> None:
    state = elt(return_state=True)
    assert state.is_completed(), state.message
    for channel in CHANNELS:
        [_, (subject, text)] = scenario.received.on(channel)
        assert "RESOLVED: ELT flow elt failed at stage ingest" in subject + text
        assert f"succeeded {UI_URL}/runs/flow-run/{state.state_details.flow_run_id}" in text
    assert Variable.get(INCIDENTS_VARIABLE) == {}


def test_no_secret_in_any_log_artifact_or_message(scenario: Scenario) -> None:
    # GIVEN the runs above: retried, failed twice with a known wrong key, recovered
    secrets = [WRONG_KEY, WEBHOOK_TOKEN, DEMO_STRIPE_KEY, DEMO_GITHUB_TOKEN, DEMO_TICKETS_TOKEN]
    texts = [(f"alert to {place}", subject + text) for place, subject, text in scenario.received.messages]
    texts += prefect_texts()
    # THEN every log line of every flow and task run, every artifact, every state message,
    # every Prefect Variable (the open incidents) and every alert is free of them
    assert len(texts) > 100
    assert leaks(texts, secrets) == []


def test_saved_prefect_notification_blocks_are_channels_too() -> None:
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    from flows.alerts import Incident, open_incident, resolve_incident

    with webhook_receiver() as (hooks_url, received):
        block = CustomWebhookNotificationBlock(
            name="oncall", url=f"{hooks_url}/block", json_data={"text": "{{subject}}"}
        )
        block.save("elt-test-oncall", overwrite=True)
        with environment({"ALERTS__BLOCKS": "custom-webhook/elt-test-oncall"}):
            incident = Incident(key="test block", cause="c", subject="ELT test incident", details=("d",))
            assert open_incident(incident)
            assert resolve_incident("test block", "fine again")
        texts = [text for _, text in received.on("/block")]
        assert texts == ["ELT test incident", "RESOLVED: ELT test incident"]
