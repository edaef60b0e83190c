"""The whole ELT run as one Prefect flow: ingest → raw contracts → build (dbt build of
what changed → mart contracts → publish the marts that passed).

Thin on purpose: each stage lives in its own module (``ingest``, ``gates``, ``build``);
this flow only orders them, stops at the first failing gate, and publishes the run report
as a Prefect artifact whether the run passed or not.
"""

from __future__ import annotations

from collections.abc import Sequence

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from dlt_sources.registry import SOURCES
from flows.alerts import alert_failed_run, resolve_failed_run
from flows.build import build_and_publish
from flows.config import flow_retries, load_settings
from flows.gates import gate, run_id
from flows.ingest import ingest_sources
from flows.observe import observed_run
from flows.report import RunSummary


class EltRunFailed(Exception):
    """The run stopped at a stage; carries the report so callers can print it."""

    def __init__(self, summary: RunSummary) -> None:
        super().__init__(summary.error)
        self.summary = summary


@flow(
    name="elt",
    log_prints=True,
    retries=flow_retries(),
    retry_delay_seconds=60,
    # alerts go out once the retries are used up; a later success sends the resolved message
    on_failure=[alert_failed_run],
    on_crashed=[alert_failed_run],
    on_completion=[resolve_failed_run],
)
def elt(
    sources: Sequence[str] | None = None, warehouse: str | None = None, full_build: bool = False
) -> RunSummary:
    """Load the sources, gate them, build what changed, gate and publish it; report in every case.

    ``sources`` limits the run to those sources and what they feed; ``full_build``
    rebuilds every node instead of the changed ones.
    """
    settings = load_settings(warehouse)
    settings.export_tool_environment()
    chosen = list(sources or SOURCES)
    summary = RunSummary(warehouse=settings.warehouse.name)
    try:
        with observed_run(settings, summary, "elt"):
            with summary.stage("ingest"):
                summary.ingests = ingest_sources(chosen, settings, run_id=run_id())
            with summary.stage("raw contracts"):
                gate(summary, "raw", settings, chosen)
            build_and_publish(summary, settings, sources, full_build=full_build)
    except Exception as exc:
        _publish(summary)
        raise EltRunFailed(summary) from exc
    _publish(summary)
    return summary


def _publish(summary: RunSummary) -> None:
    get_run_logger().info("rows loaded: %d; %s", summary.rows_loaded, summary.error or "all stages passed")
    create_markdown_artifact(
        key="elt-run-report", markdown=summary.to_markdown(), description="ELT run report"
    )
