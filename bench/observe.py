"""What seeing into the data costs: profiling and lineage, each against the work it rides on.

``profile_overhead_ratio``: profiling the tables the demo's first full run changed ÷ that
whole first run (the ``elt`` flow on the demo data: ingest, contracts, dbt, publish),
both in this process. ``lineage_overhead_ratio``: a full ``dbt build`` of the demo
project with the run's lineage (column lineage worked out from scratch, every event
written, waited for) ÷ the same build without, alternating, median of ``repeats`` each.
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flows.config import environment, load_settings

Figures = dict[str, float]


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def bench_observe(tmp: Path, orders: int, repeats: int, log: Callable[[str], None]) -> Figures:
    from prefect import flow

    from flows.elt import elt
    from flows.lineage import RunLineage
    from flows.profiles import ProfiledTable, profile_tables
    from flows.transform import last_run_results, parse_project, run_dbt_build
    from standins import demo_sources

    @flow(name="bench-warm-up")
    def warm_up() -> None:
        """Start Prefect's temporary server before any timing: not part of a run's cost."""

    settings_env = {
        "ELT_DUCKDB_PATH": str(tmp / "observe.duckdb"),
        "ELT_LINEAGE_FILE": str(tmp / "lineage" / "events.jsonl"),
        "DBT_QUIET": "true",  # stdout carries only the figures
    }
    with (
        demo_sources(tmp / "observe-demo", n_orders=orders, durable=False, recent=True) as sources,
        environment(sources.environment() | settings_env),
    ):
        warm_up()
        summary, run_s = _timed(elt)
        log(f"observe: first full run on {orders:,} orders in {run_s:.1f}s")
        settings = load_settings()
        changed = [ProfiledTable(r.dataset, t) for r in summary.ingests for t, n in r.rows.items() if n]
        changed += [ProfiledTable(f"{settings.dbt_schema}_marts", mart) for mart in summary.published]
        profiles, profile_s = _timed(lambda: profile_tables(settings, changed, "bench"))
        log(f"observe: profiled {len(changed)} tables ({len(profiles)} metrics) in {profile_s:.2f}s")

        project = parse_project()

        def build() -> None:
            run_dbt_build([], manifest=project.manifest)

        def build_with_lineage() -> None:
            lineage = RunLineage(settings, "bench", str(uuid.uuid4()))
            build()
            lineage.dbt_build(last_run_results(), project.contents)
            lineage.close()

        plain, traced = [], []
        for _ in range(repeats):
            plain.append(_timed(build)[1])
            traced.append(_timed(build_with_lineage)[1])
        log(f"observe: dbt build {plain} s; with lineage {traced} s")
    dbt_s, lineage_s = statistics.median(plain), statistics.median(traced)
    return {
        "first_run_s": run_s,
        "profile_s": profile_s,
        "profile_overhead_ratio": profile_s / run_s,
        "dbt_build_s": dbt_s,
        "dbt_build_with_lineage_s": lineage_s,
        "lineage_overhead_ratio": lineage_s / dbt_s,
    }
