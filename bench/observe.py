"""What seeing into the data costs: profiling and lineage, each against the work it rides on.

``profile_overhead_ratio``: profiling the tables the demo's first full run changed ÷ that
whole first run (the ``elt`` flow on the demo data: ingest, contracts, dbt, publish),
both in this process.

``lineage_overhead_ratio``: the dbt stage as a run has it with lineage (a full ``dbt
build`` of the demo project, then the lineage's hand-off: the built tables' columns read,
the work queued; the stored lineage was read when the loads were handed over, as in a run)
÷ the same build without: ``repeats`` pairs of builds, which one goes first alternating,
the median of the pairs' ratios (the machine's pace drifts; a pair shares it).
``lineage_waited_overhead_ratio`` also waits for all of the lineage work (every event
built and written to the default file transport; column lineage read from the store, as
in every run after the first). ``lineage_cold_compute_ratio``: working out the column
lineage of every built model from scratch (a first run, or every model changed) ÷ the
build, the work a run does once per compiled-SQL hash.
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

        def build_with_lineage() -> tuple[float, float]:
            """Seconds to the end of the stage, and to the end of the lineage work."""
            lineage = RunLineage(settings, "bench", str(uuid.uuid4()))
            lineage.read_stored()  # in a run, when the ingest stage hands over its loads
            started = time.perf_counter()
            build()
            lineage.dbt_build(last_run_results(), project.contents)
            stage_s = time.perf_counter() - started
            lineage.close()
            return stage_s, time.perf_counter() - started

        plain, traced = [], []
        for pair in range(repeats):
            # the order alternates, so a second build running slower or faster favours neither
            if pair % 2:
                traced.append(build_with_lineage())
                plain.append(_timed(build)[1])
            else:
                plain.append(_timed(build)[1])
                traced.append(build_with_lineage())
        log(f"observe: dbt build {plain} s; with lineage (stage, waited) {traced} s")
        cold_s = _cold_column_lineage(settings.duckdb_path, last_run_results())
        log(f"observe: column lineage of every built model from scratch in {cold_s:.2f}s")
    dbt_s = statistics.median(plain)
    lineage_s = statistics.median(stage for stage, _ in traced)
    waited_s = statistics.median(waited for _, waited in traced)
    pairs = list(zip(plain, traced, strict=True))
    return {
        "first_run_s": run_s,
        "profile_s": profile_s,
        "profile_overhead_ratio": profile_s / run_s,
        "dbt_build_s": dbt_s,
        "dbt_build_with_lineage_s": lineage_s,
        "lineage_overhead_ratio": statistics.median(stage / bare for bare, (stage, _) in pairs),
        "dbt_build_with_lineage_waited_s": waited_s,
        "lineage_waited_overhead_ratio": statistics.median(waited / bare for bare, (_, waited) in pairs),
        "lineage_cold_compute_s": cold_s,
        "lineage_cold_compute_ratio": cold_s / dbt_s,
    }


def _cold_column_lineage(warehouse: Path, run_results: dict[str, Any]) -> float:
    """Seconds to work out the column lineage of every model in ``run_results`` with nothing
    cached, from the DuckDB file's information schema (read before the timing)."""
    import duckdb

    from flows.lineage.columns import column_lineage

    with duckdb.connect(str(warehouse), read_only=True) as con:
        rows = con.execute(
            "select table_catalog, table_schema, table_name, column_name, data_type"
            " from information_schema.columns"
        ).fetchall()
    catalog: dict[str, dict[str, dict[str, dict[str, str]]]] = {}
    for database, schema, table, column, kind in rows:
        catalog.setdefault(database, {}).setdefault(schema, {}).setdefault(table, {})[column] = kind
    models = [r["compiled_code"] for r in run_results["results"] if r["unique_id"].startswith("model.")]
    started = time.perf_counter()
    for sql in models:
        column_lineage(sql, catalog, "duckdb")
    return time.perf_counter() - started
