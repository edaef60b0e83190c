"""Alerts for the on-call engineer: one message per incident, one more when it is resolved.

An incident is something a person must act on: a flow run that failed or crashed once
its retries were used up, or a table past its freshness SLA. A run that succeeds on a
retry never alerts. While an incident is open, more failures with the same cause stay
quiet (a nightly run failing three nights running is one incident); a different cause
is announced; the next success sends the resolved message.

Channels are configured once, as secrets (their URLs carry tokens), through dlt's
providers like every other secret (env ``ALERTS__…``, ``.dlt/secrets.toml``, Prefect
Secret blocks):

* ``alerts.slack_webhook``: a Slack-compatible incoming webhook (Slack, Mattermost, Rocket.Chat)
* ``alerts.webhook``: any URL taking a JSON POST ``{status, subject, body, incident}``
* ``alerts.email``: an apprise ``mailto://`` / ``mailtos://`` URL of an SMTP server
* ``alerts.blocks``: names of saved Prefect notification blocks, e.g. ``["slack-webhook/oncall"]``

Messages go out through Prefect's notification blocks. Open incidents are kept in a
Prefect Variable on the API server, so a fresh worker knows what was already announced.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from prefect.blocks.core import Block
from prefect.blocks.notifications import (
    AppriseNotificationBlock,
    CustomWebhookNotificationBlock,
    NotificationBlock,
)
from prefect.settings import PREFECT_UI_URL
from prefect.variables import Variable

from flows.redact import first_line, redact

logger = logging.getLogger(__name__)

INCIDENTS_VARIABLE = "elt_open_incidents"


@dataclass(frozen=True)
class Incident:
    """What broke, in the words of the message; ``key`` names the thing, ``cause`` the reason."""

    key: str
    cause: str
    subject: str
    details: tuple[str, ...]

    def body(self) -> str:
        return "\n".join(self.details)


def channels() -> tuple[list[NotificationBlock], list[str]]:
    """The notification block of every configured channel (none: no alerts), and their secret URLs."""
    import dlt

    slack, webhook, email = (
        str(dlt.secrets.get(f"alerts.{name}") or "") for name in ("slack_webhook", "webhook", "email")
    )
    found: list[NotificationBlock] = []
    if slack:
        found.append(
            CustomWebhookNotificationBlock(
                name="slack", url=slack, json_data={"text": "*{{subject}}*\n{{body}}"}
            )
        )
    if webhook:
        found.append(
            CustomWebhookNotificationBlock(
                name="webhook", url=webhook, json_data={"subject": "{{subject}}", "body": "{{body}}"}
            )
        )
    if email:
        found.append(AppriseNotificationBlock(url=email))
    for name in _names(dlt.secrets.get("alerts.blocks")):
        found.append(Block.load(name))
    return found, [url for url in (slack, webhook, email) if url]


def open_incident(incident: Incident) -> bool:
    """Announce ``incident`` unless it is already open with the same cause; True if sent.

    Recorded as open only once a channel took the message, so an announcement that
    could not be delivered is tried again at the next failure.
    """
    incidents = _open_incidents()
    known = incidents.get(incident.key)
    if known is not None and known["cause"] == incident.cause:
        logger.info("incident %s already announced; not alerting again", incident.key)
        return False
    if not _send(incident.subject, incident.body()):
        return False
    incidents[incident.key] = {"cause": incident.cause, "subject": incident.subject}
    Variable.set(INCIDENTS_VARIABLE, incidents, overwrite=True)
    return True


def resolve_incident(key: str, resolution: str) -> bool:
    """Send the resolved message of the open incident ``key``, if there is one; True if sent."""
    incidents = _open_incidents()
    known = incidents.get(key)
    if known is None or not _send(f"RESOLVED: {known['subject']}", resolution):
        return False
    del incidents[key]
    Variable.set(INCIDENTS_VARIABLE, incidents, overwrite=True)
    return True


def open_incident_keys() -> set[str]:
    """The keys of the incidents announced and not yet resolved."""
    return set(_open_incidents())


def alert_failed_run(flow: Any, flow_run: Any, state: Any) -> None:
    """Prefect ``on_failure`` / ``on_crashed`` hook: runs once the run's retries are used up.

    Names the run (with its UI link), the stage, what failed in it (contracts with their
    checks, dbt nodes) and the first error line; an ``EltRunFailed``-style error carries
    that in its ``summary`` (flows/report.py ``RunSummary``).
    """
    try:
        error = _state_error(state)
        summary = getattr(error, "summary", None)
        stage = summary.failed_stage if summary is not None else None
        failed = summary.failed_items() if summary is not None else []
        line = first_line((summary.error if summary is not None else None) or error or state.message)
        verb = "crashed" if state.is_crashed() else "failed"
        open_incident(
            Incident(
                key=_run_key(flow, flow_run),
                cause=f"{stage or verb}: {'; '.join(failed) or line}",
                subject=f"ELT flow {flow.name} {verb}" + (f" at stage {stage}" if stage else ""),
                details=(
                    f"flow run: {flow_run.name} {flow_run_link(flow_run)}",
                    f"stage: {stage or 'unknown'}",
                    *(f"failed: {item}" for item in failed),
                    f"error: {line}",
                ),
            )
        )
    except Exception as exc:  # a broken alert must not change the run's outcome
        logger.error("could not send the failure alert: %s", first_line(exc))


def resolve_failed_run(flow: Any, flow_run: Any, state: Any) -> None:
    """Prefect ``on_completion`` hook: a success closes the open incident of this flow/deployment."""
    try:
        resolve_incident(
            _run_key(flow, flow_run), f"flow run {flow_run.name} succeeded {flow_run_link(flow_run)}"
        )
    except Exception as exc:
        logger.error("could not send the resolved message: %s", first_line(exc))


def flow_run_link(flow_run: Any) -> str:
    """The flow run's page in the Prefect UI, or a note saying where to set the UI's address."""
    base = PREFECT_UI_URL.value()
    if not base:
        return "(set PREFECT_UI_URL for a link to the run)"
    return f"{base.rstrip('/')}/runs/flow-run/{flow_run.id}"


def _send(subject: str, body: str) -> bool:
    """Deliver to every channel; a channel that fails is logged and does not stop the others."""
    configured, urls = channels()
    subject, body = redact(redact(subject), urls), redact(redact(body), urls)
    delivered = False
    for channel in configured:
        try:
            # apprise-based blocks only log a failed delivery unless asked to raise
            with channel.raise_on_failure():
                channel.notify(body=body, subject=subject)
            delivered = True
        except Exception as exc:  # one broken channel must not hide the incident on the others
            logger.error("alert channel %s failed: %s", type(channel).__name__, first_line(exc))
    return delivered


def _names(value: Any) -> list[str]:
    """A list setting given as a list, a JSON list or comma-separated text."""
    if isinstance(value, str):
        value = json.loads(value) if value.strip().startswith("[") else value.split(",")
    return [str(name).strip() for name in value or [] if str(name).strip()]


def _run_key(flow: Any, flow_run: Any) -> str:
    """One incident per flow and deployment (ad-hoc runs of a flow share one)."""
    return f"flow {flow.name} / deployment {flow_run.deployment_id or 'ad hoc'}"


def _state_error(state: Any) -> BaseException | None:
    try:
        result = state.result(raise_on_failure=False)
    except Exception as exc:  # the result could not be read back: the error is the best we have
        return exc
    return result if isinstance(result, BaseException) else None


def _open_incidents() -> dict[str, dict[str, str]]:
    value = Variable.get(INCIDENTS_VARIABLE, default={})
    return dict(value) if isinstance(value, dict) else {}
