"""The whole ELT run as one Prefect flow: ingest → raw contracts → dbt build → mart
contracts → publish.

Write-audit-publish: dbt builds the marts into ``<schema>_marts_audit``; the mart
contracts check them there; only when all pass are they published to
``<schema>_marts``, the schema consumers read (transform/macros/publish_marts.sql). A
failed contract leaves the published marts untouched and keeps the failing tables in
``<schema>_marts_quarantine``.

Thin on purpose: each stage lives in its own module (``ingest``, ``checks``,
``transform``); this flow only orders them, stops at the first failing gate, and
publishes the run report as a Prefect artifact whether the run passed or not.
"""

from __future__ import annotations

from collections.abc import Sequence

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from dlt_sources.registry import SOURCES
from flows.alerts import alert_failed_run, resolve_failed_run
from flows.audit import record_contracts
from flows.checks import ContractsFailed, run_contracts
from flows.config import Settings, flow_retries, load_settings
from flows.contract_target import ContractTarget
from flows.ingest import ingest_sources, source_tag
from flows.pii import ensure_pii_salt
from flows.report import RunSummary
from flows.transform import DbtBuildError, DbtInvocationError, run_dbt_build, run_dbt_operation


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
def elt(sources: Sequence[str] | None = None, warehouse: str | None = None) -> RunSummary:
    """Load the sources, gate them, transform, gate the marts; report in every case."""
    settings = load_settings(warehouse)
    settings.export_tool_environment()
    chosen = list(sources or SOURCES)
    summary = RunSummary(warehouse=settings.warehouse.name)
    try:
        with summary.stage("ingest"):
            summary.ingests = ingest_sources(chosen, settings, run_id=run_id())
        with summary.stage("raw contracts"):
            gate(summary, "raw", settings, chosen)
        build_and_publish(summary, settings)
    except Exception as exc:
        _publish(summary)
        raise EltRunFailed(summary) from exc
    _publish(summary)
    return summary


def build_and_publish(summary: RunSummary, settings: Settings, dbt_args: Sequence[str] = ()) -> None:
    """dbt build → mart contracts → publish (write-audit-publish), each a stage of ``summary``.

    ``dbt_args`` narrow the build (a backfill rebuilds what its source feeds); when the
    selection holds no model there is nothing to check or publish.
    """
    with summary.stage("dbt build"):
        get_run_logger().info("PII salt %s", ensure_pii_salt(settings))
        try:
            # a retry of this flow run re-runs only the failed dbt nodes and their children
            summary.dbt = run_dbt_build(dbt_args, resume_failed=flow_run.run_count > 1)
        except DbtBuildError as exc:
            summary.dbt = exc.summary
            raise
    if not summary.dbt.nodes:
        return
    with summary.stage("mart contracts"):
        try:
            gate(summary, "marts", settings)
        except ContractsFailed as exc:
            _quarantine(exc)
            raise
    with summary.stage("publish"):
        run_dbt_operation("publish_marts")


def run_id() -> str:
    """This flow run's id, the key of its rows in the audit tables."""
    return str(flow_run.get_id() or "ad hoc")


def gate(summary: RunSummary, layer: str, settings: Settings, sources: Sequence[str] | None = None) -> None:
    """Verify a layer's contracts; every verdict goes into the report and the audit table,
    then a failure stops the run. The raw gate of some sources holds their tags (a load of
    one of them waits for it, flows.ingest.source_tag)."""
    results = []
    try:
        results = run_contracts.with_options(tags={source_tag(source) for source in sources or ()})(
            layer,
            settings.soda_datasource,
            {"MARTS_SCHEMA": f"{settings.dbt_schema}_marts_audit"},
            sources=sources,
            target=ContractTarget.for_settings(settings),
        )
    except ContractsFailed as exc:
        results = exc.results
        raise
    finally:
        summary.contracts += results
        record_contracts(settings, results, run_id=run_id())


def _quarantine(failed: ContractsFailed) -> None:
    """Keep the audited tables that failed a contract, named after this flow run, for inspection."""
    tables = sorted({result.dataset.rsplit(".", 1)[-1] for result in failed.results if not result.passed})
    if not tables:
        return
    run_id = (flow_run.get_id() or "manual").replace("-", "_")
    try:
        run_dbt_operation("quarantine_marts", {"tables": tables, "run_id": run_id})
    except DbtInvocationError as exc:  # e.g. a contract naming a table that was never built
        get_run_logger().warning("could not keep the failing marts for inspection: %s", exc)


def _publish(summary: RunSummary) -> None:
    get_run_logger().info("rows loaded: %d; %s", summary.rows_loaded, summary.error or "all stages passed")
    create_markdown_artifact(
        key="elt-run-report", markdown=summary.to_markdown(), description="ELT run report"
    )
