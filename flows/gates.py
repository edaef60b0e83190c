"""A gate between stages: a layer's contracts verified, every verdict reported and recorded.

Shared by the full run (raw and mart gates), the per-source runs (raw) and every build
(marts, flows/build.py), so a verdict reads and is audited the same wherever it came from.
"""

from __future__ import annotations

from collections.abc import Sequence

from prefect.runtime import flow_run

from flows import progress
from flows.audit import record_contracts
from flows.checks import ContractsFailed, run_contracts
from flows.config import Settings
from flows.contract_target import ContractTarget
from flows.ingest import source_tag
from flows.lineage import current as current_lineage
from flows.report import RunSummary


def run_id() -> str:
    """This flow run's id, the key of its rows in the audit tables."""
    return str(flow_run.get_id() or "ad hoc")


def gate(
    summary: RunSummary,
    layer: str,
    settings: Settings,
    sources: Sequence[str] | None = None,
    tables: Sequence[str] | None = None,
) -> None:
    """Verify a layer's contracts; every verdict goes into the report and the audit table,
    then a failure stops the run. The raw gate of some sources holds their tags (a load of
    one of them waits for it, flows.ingest.source_tag); ``tables`` narrows the mart gate
    to the marts a build made."""
    results = []
    try:
        results = run_contracts.with_options(tags={source_tag(source) for source in sources or ()})(
            layer,
            settings.soda_datasource,
            {"MARTS_SCHEMA": f"{settings.dbt_schema}_marts_audit"},
            sources=sources,
            target=ContractTarget.for_settings(settings),
            tables=tables,
        )
    except ContractsFailed as exc:
        results = exc.results
        raise
    finally:
        progress.contracts_checked(layer, sum(r.passed for r in results), sum(not r.passed for r in results))
        summary.contracts += results
        record_contracts(settings, results, run_id=run_id())
        if (lineage := current_lineage()) is not None:
            lineage.contracts(results)
