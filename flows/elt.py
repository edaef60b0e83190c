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
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from flows.checks import ContractsFailed, run_contracts
from flows.config import flow_retries, load_settings
from flows.ingest import SOURCES, ingest
from flows.pii import ensure_pii_salt
from flows.report import RunSummary
from flows.transform import DbtBuildError, DbtInvocationError, run_dbt_build, run_dbt_operation


class EltRunFailed(Exception):
    """The run stopped at a stage; carries the report so callers can print it."""

    def __init__(self, summary: RunSummary) -> None:
        super().__init__(summary.error)
        self.summary = summary


@flow(name="elt", log_prints=True, retries=flow_retries(), retry_delay_seconds=60)
def elt(sources: Sequence[str] | None = None, warehouse: str | None = None) -> RunSummary:
    """Load the sources, gate them, transform, gate the marts; report in every case."""
    settings = load_settings(warehouse)
    settings.export_tool_environment()
    chosen = list(sources or SOURCES)
    summary = RunSummary(warehouse=settings.warehouse.value)
    soda_variables = {"MARTS_SCHEMA": f"{settings.dbt_schema}_marts_audit"}
    try:
        with summary.stage("ingest"):
            load = ingest.with_options(retries=settings.ingest_retries)
            futures = [load.submit(name, settings) for name in chosen]
            summary.ingests = [future.result() for future in futures]
        with summary.stage("raw contracts"):
            _gate(summary, "raw", settings.soda_datasource, soda_variables, chosen)
        with summary.stage("dbt build"):
            get_run_logger().info("PII salt %s", ensure_pii_salt(settings))
            try:
                # a retry of this flow run re-runs only the failed dbt nodes and their children
                summary.dbt = run_dbt_build(resume_failed=flow_run.run_count > 1)
            except DbtBuildError as exc:
                summary.dbt = exc.summary
                raise
        with summary.stage("mart contracts"):
            try:
                _gate(summary, "marts", settings.soda_datasource, soda_variables)
            except ContractsFailed as exc:
                _quarantine(exc)
                raise
        with summary.stage("publish"):
            run_dbt_operation("publish_marts")
    except Exception as exc:
        _publish(summary)
        raise EltRunFailed(summary) from exc
    _publish(summary)
    return summary


def _gate(
    summary: RunSummary,
    layer: str,
    datasource: Path,
    variables: dict[str, str],
    sources: Sequence[str] | None = None,
) -> None:
    """Verify a layer's contracts; every verdict goes into the report, then a failure stops the run."""
    try:
        summary.contracts += run_contracts(layer, datasource, variables, sources=sources)
    except ContractsFailed as exc:
        summary.contracts += exc.results
        raise


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
