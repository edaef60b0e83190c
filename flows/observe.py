"""What every run leaves behind about itself: lineage, stage timings, profiles, anomalies.

Why one wrapper: the full run and the per-source runs observe themselves the same way;
each flow opens ``observed_run`` around its stages and stays thin.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from flows.audit import record_run
from flows.config import Settings
from flows.gates import run_id
from flows.lineage import run_lineage
from flows.report import RunSummary


@contextmanager
def observed_run(settings: Settings, summary: RunSummary, flow_name: str) -> Iterator[None]:
    """Run the stages inside; afterwards, pass or fail, record the stage timings and finish
    sending the run's lineage (its diagram and any failure to send go into the report)."""
    run = run_id()
    with run_lineage(settings, flow_name, run) as lineage:
        try:
            yield
        finally:
            record_run(settings, summary, run, flow_name)
            lineage.close()
            summary.lineage = lineage.mermaid()
            summary.observed += lineage.failures
