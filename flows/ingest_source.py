"""One source on its own schedule: ingest it, then gate its raw contracts.

Why a separate flow: sources change at different paces (CDC every hour, a SaaS API
every few hours), and each gets its own deployment and cron in
``deployments/prefect.yaml`` while the full ``elt`` run keeps its nightly one.

Thin on purpose: the load is ``flows.ingest.ingest_sources`` (the full run's ``ingest``
task, retries and audit rows) and the gate is ``run_contracts`` on ``checks/raw/<source>/``.
Both tasks carry the tag ``source:<name>`` (``flows.ingest.source_tag``), so a run of the
full ELT never loads the source while this one loads or reads it; two runs of this
deployment queue whole (deployment concurrency limit, ``deployments/prefect.yaml``).
A run that loaded rows and passed its gate emits ``elt.raw.landed``, on which the
build-on-arrival deployment builds what landed (flows/on_arrival.py).
"""

from __future__ import annotations

from typing import Final

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.events import emit_event

from dlt_sources.errors import SourceError
from dlt_sources.registry import SOURCES
from flows.alerts import alert_failed_run, resolve_failed_run
from flows.config import load_settings
from flows.elt import EltRunFailed
from flows.gates import gate, run_id
from flows.ingest import ingest_sources
from flows.observe import observed_run
from flows.report import RunSummary

# what the build-on-arrival deployment's trigger matches (deployments/prefect.yaml)
LANDED_EVENT: Final[str] = "elt.raw.landed"


def landed_resource(source: str) -> dict[str, str]:
    """The resource of a source's ``elt.raw.landed`` event: ``elt.source.<name>``."""
    return {"prefect.resource.id": f"elt.source.{source}", "prefect.resource.name": source}


@flow(
    name="ingest-source",
    flow_run_name="ingest-{source}",
    log_prints=True,
    on_failure=[alert_failed_run],
    on_crashed=[alert_failed_run],
    on_completion=[resolve_failed_run],
)
def ingest_source(source: str, warehouse: str | None = None) -> RunSummary:
    """Load one source into ``raw_<source>`` and verify its raw contracts; report in every case."""
    if source not in SOURCES:
        raise SourceError(f"unknown source {source!r}; known sources: {', '.join(SOURCES)}")
    settings = load_settings(warehouse)
    settings.export_tool_environment()
    summary = RunSummary(warehouse=settings.warehouse.name)
    try:
        with observed_run(settings, summary, "ingest-source"):
            with summary.stage("ingest"):
                # the same task, retries, tag and audit rows as the full run
                summary.ingests = ingest_sources([source], settings, run_id=run_id())
            with summary.stage("raw contracts"):
                gate(summary, "raw", settings, [source])
    except Exception as exc:
        _publish(source, summary)
        raise EltRunFailed(summary) from exc
    _publish(source, summary)
    if summary.rows_loaded:
        # what the build-on-arrival deployment's trigger waits for (flows/on_arrival.py)
        emit_event(LANDED_EVENT, landed_resource(source), payload={"rows": summary.rows_loaded})
    return summary


def report_key(source: str) -> str:
    """The artifact key of a source's report (keys allow only lower case, digits and dashes)."""
    return f"ingest-{source.replace('_', '-')}-report"


def _publish(source: str, summary: RunSummary) -> None:
    create_markdown_artifact(
        key=report_key(source), markdown=summary.to_markdown(), description=f"Ingest report of {source}"
    )
