"""The whole ELT run as one Prefect flow: ingest → raw contracts → dbt build → mart contracts.

Thin on purpose: each stage lives in its own module (``ingest``, ``checks``,
``transform``); this flow only orders them, stops at the first failing gate, and
publishes the run report as a Prefect artifact whether the run passed or not.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from flows.checks import ContractsFailed, run_contracts
from flows.config import load_settings
from flows.ingest import SOURCES, ingest
from flows.report import RunSummary
from flows.transform import DbtBuildError, run_dbt_build


class EltRunFailed(Exception):
    """The run stopped at a stage; carries the report so callers can print it."""

    def __init__(self, summary: RunSummary) -> None:
        super().__init__(summary.error)
        self.summary = summary


@flow(name="elt", log_prints=True)
def elt(sources: Sequence[str] | None = None, warehouse: str | None = None) -> RunSummary:
    """Load the sources, gate them, transform, gate the marts; report in every case."""
    settings = load_settings(warehouse)
    settings.export_tool_environment()
    chosen = list(sources or SOURCES)
    summary = RunSummary(warehouse=settings.warehouse.value)
    soda_variables = {"MARTS_SCHEMA": f"{settings.dbt_schema}_marts"}
    try:
        with summary.stage("ingest"):
            load = ingest.with_options(retries=settings.ingest_retries)
            futures = [load.submit(name, settings) for name in chosen]
            summary.ingests = [future.result() for future in futures]
        with summary.stage("raw contracts"):
            _gate(summary, "raw", settings.soda_datasource, soda_variables, chosen)
        with summary.stage("dbt build"):
            try:
                summary.dbt = run_dbt_build()
            except DbtBuildError as exc:
                summary.dbt = exc.summary
                raise
        with summary.stage("mart contracts"):
            _gate(summary, "marts", settings.soda_datasource, soda_variables)
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


def _publish(summary: RunSummary) -> None:
    get_run_logger().info("rows loaded: %d; %s", summary.rows_loaded, summary.error or "all stages passed")
    create_markdown_artifact(
        key="elt-run-report", markdown=summary.to_markdown(), description="ELT run report"
    )
