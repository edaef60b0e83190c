"""Ingest benchmark: our dlt pipelines versus the fastest plain client for each source.

Why: an absolute rows/s figure says little on a shared 2-core machine; a baseline measured
in the same run, against the same server and data, turns it into a ratio that tells how
much of the source's raw speed our pipeline keeps. The sources are local stand-ins (a real
PostgreSQL, the Stripe-compatible and the tickets HTTP APIs).

The CDC figures (``cdc_*``, bench/cdc.py) apply ``--cdc-changes`` changes through the
Postgres CDC source (the shop's loader) against a raw read of the same changes from a slot.

The REST figures (``rest_*``) load ``--rest-records`` tickets from the local stand-in
(standins/rest_api.py) with the declarative source ``dlt_sources/rest/example_tickets.yml``
(merge into DuckDB via parquet), against a plain requests + orjson + pyarrow loop into
DuckDB and, on a 100k sample, dlt's ``rest_api`` source with its defaults; each client
runs in its own process (``bench/rest_worker.py``), which also reports its peak RSS.

The anomaly figures (``anomaly_*``, ``naive_zscore_*``, bench/anomalies.py) run the
detector and a plain 3-sigma z-score over a generated history with injected anomalies; the
observation figures (``profile_overhead_ratio``, ``lineage_overhead_ratio``,
bench/observe.py) run the demo's first full run on ``--orders`` orders and dbt builds of
it with and without lineage.

Output: one ``name: value`` line per figure on stdout; progress goes to stderr.
Run from the project root: ``python -m bench.run [--orders N] [--rest-records N] [--cdc-changes N]
[--only rest]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import requests

from flows import config
from flows.config import environment
from standins import DEMO_STRIPE_KEY, dataset, stripe_store_for
from standins.rest_api import MAX_LIMIT, TicketStore, serve_tickets
from standins.stripe_api import serve_stripe

SHOP_TABLES = ("customers", "products", "orders", "order_items")
STRIPE_PAGE_SIZE = 100

Figures = dict[str, float]


def log(message: str) -> None:
    """Progress to stderr, so stdout stays machine-readable."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """``fn()`` and its wall time; wall, not CPU, because that is what a flow run waits for."""
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def _loaded_rows(pipeline: Any) -> dict[str, int]:
    """Rows per data table that the last run normalized (dlt's own tables left out)."""
    info = pipeline.last_trace.last_normalize_info
    counts = info.row_counts if info else {}
    return {table: n for table, n in counts.items() if not table.startswith("_dlt")}


def _pipeline(name: str, dataset_name: str, tmp: Path) -> Any:
    """A throwaway dlt pipeline with its working folder and DuckDB file in ``tmp``."""
    import dlt

    return dlt.pipeline(
        pipeline_name=name,
        destination=dlt.destinations.duckdb(str(tmp / "bench.duckdb")),
        dataset_name=dataset_name,
        pipelines_dir=str(tmp / "pipelines"),
    )


# ------------------------------------------------------------------------- stripe
def page_all_charges(base_url: str, api_key: str) -> int:
    """Baseline: the simplest correct client (one session, cursor paging, orjson); returns records."""
    records = 0
    params: dict[str, Any] = {"limit": STRIPE_PAGE_SIZE}
    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {api_key}"
        while True:
            response = session.get(f"{base_url}/v1/charges", params=params, timeout=30)
            response.raise_for_status()
            body = orjson.loads(response.content)
            page = body["data"]
            records += len(page)
            if not body["has_more"] or not page:
                return records
            params["starting_after"] = page[-1]["id"]


def bench_stripe(tmp: Path, data: dataset.ShopData) -> Figures:
    """Stripe API: plain paging baseline, then our dlt source restricted to charges."""
    from dlt_sources.stripe import stripe_source

    store = stripe_store_for(data)
    with serve_stripe(store, DEMO_STRIPE_KEY) as base_url:
        http_records, http_s = _timed(lambda: page_all_charges(base_url, DEMO_STRIPE_KEY))
        log(f"stripe: HTTP baseline {http_records} records in {http_s:.2f}s")

        env = {"SOURCES__STRIPE__BASE_URL": base_url, "SOURCES__STRIPE__API_KEY": DEMO_STRIPE_KEY}
        with environment(env):
            pipeline = _pipeline("bench_stripe", "raw_stripe", tmp)
            info, dlt_s = _timed(
                lambda: pipeline.run(stripe_source().with_resources("charges"), loader_file_format="parquet")
            )
            info.raise_on_failed_jobs()
            dlt_records = _loaded_rows(pipeline).get("charges", 0)
            log(f"stripe: dlt load {dlt_records} records in {dlt_s:.2f}s")
            if dlt_records != http_records:
                log(f"stripe: WARNING dlt loaded {dlt_records} records but paging read {http_records}")

    http_rate = http_records / http_s
    dlt_rate = dlt_records / dlt_s
    return {
        "stripe_http_baseline_records_per_s": http_rate,
        "stripe_dlt_records_per_s": dlt_rate,
        "stripe_dlt_vs_http_ratio": dlt_rate / http_rate,
    }


# --------------------------------------------------------------------------- rest
REST_TOKEN = "bench-tickets-token"
REST_DLT_DEFAULTS_RECORDS = 100_000


def _rest_client(mode: str, base_url: str, workdir: Path, limit: int | None = None) -> dict[str, float]:
    """One client run in its own process (see bench/rest_worker.py); its JSON result."""
    command = [sys.executable, "-m", "bench.rest_worker", mode, base_url, REST_TOKEN, str(workdir)]
    if limit is not None:
        command.append(str(limit))
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"rest bench client {mode!r} failed:\n{done.stderr[-3000:]}")
    for line in done.stderr.splitlines():
        if line.startswith("steps:"):
            log(f"rest: {mode} dlt {line}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_rest(tmp: Path, records: int, repeats: int) -> Figures:
    """Declarative REST source (example_tickets.yml) vs a plain loop vs dlt's rest_api defaults.

    The stand-in serves from this process; each client runs in a child process, so
    server and client get a core each and the child's peak memory is its own.
    Best of ``repeats`` runs for our path and the plain loop, each into a fresh DuckDB.
    """
    store = TicketStore(records)
    log(f"rest: building {records} tickets' pages in the stand-in")
    pages = range(0, records, MAX_LIMIT)
    _, warm_s = _timed(lambda: [store.page({"limit": str(MAX_LIMIT), "cursor": str(p)}) for p in pages])
    log(f"rest: pages ready in {warm_s:.1f}s")
    best: dict[str, float] = {}
    peak_mb = 0.0
    with serve_tickets(store, REST_TOKEN) as base_url:

        def record(mode: str, run: int, limit: int | None = None) -> None:
            nonlocal peak_mb
            result = _rest_client(mode, base_url, tmp / f"rest-{mode}-{run}", limit)
            rate = result["records"] / result["seconds"]
            log(
                f"rest: {mode} run {run}: {result['records']:.0f} records in {result['seconds']:.2f}s "
                f"({rate:,.0f}/s), peak RSS {result['maxrss_mb']:.0f} MB"
            )
            expected = records if limit is None else min(limit, records)
            if result["records"] != expected:
                log(f"rest: WARNING {mode} loaded {result['records']:.0f} records, expected {expected}")
            best[mode] = max(best.get(mode, 0.0), rate)
            if mode == "ours":
                peak_mb = max(peak_mb, result["maxrss_mb"])

        record("transfer", 0)
        for run in range(repeats):  # interleaved, so a noisy neighbour hurts both alike
            record("ours", run)
            record("plain", run)
        sample = min(records, REST_DLT_DEFAULTS_RECORDS)
        log(
            f"rest: NOTE dlt rest_api with its defaults runs on {sample} records only "
            "(it needs minutes and GBs for a million); its rate is records/s on that sample"
        )
        record("dlt_defaults", 0, sample)

    return {
        "rest_records_per_s": best["ours"],
        "rest_plain_loop_records_per_s": best["plain"],
        "rest_vs_plain_ratio": best["ours"] / best["plain"],
        "rest_dlt_defaults_records_per_s": best["dlt_defaults"],
        "rest_vs_dlt_defaults_ratio": best["ours"] / best["dlt_defaults"],
        "rest_transfer_only_records_per_s": best["transfer"],
        "rest_peak_memory_mb": peak_mb,
    }


# --------------------------------------------------------------------------- main
def _format(name: str, value: float) -> str:
    """Per-second rates whole, ratios, recalls and false-positive rates to 3 decimals, durations to 0.01 s."""
    if name.endswith("_per_s"):
        return f"{value:.0f}"
    if name.endswith(("_ratio", "_recall", "_rate")):
        return f"{value:.3f}"
    if name.endswith("_mb"):
        return f"{value:.0f}"
    return f"{value:.2f}"


def warm_up(tmp: Path) -> None:
    """Load one row through dlt into DuckDB as parquet before any timing.

    Why: dlt imports pyarrow, DuckDB and its loader code lazily on first use; that
    one-off cost (seconds on a busy machine) is not throughput and would otherwise
    be charged to whichever pipeline happens to run first.
    """
    import pyarrow  # noqa: F401

    pipeline = _pipeline("bench_warmup", "warmup", tmp)
    pipeline.run(
        [{"id": 1, "ts": 0}], table_name="warmup", loader_file_format="parquet"
    ).raise_on_failed_jobs()


def main(argv: list[str] | None = None) -> int:
    """Run both benchmarks in one temp dir, removed even when a step fails."""
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=100_000, help="orders in the generated data set")
    parser.add_argument(
        "--rest-records", type=int, default=1_000_000, help="tickets served by the REST stand-in"
    )
    parser.add_argument(
        "--rest-repeats", type=int, default=2, help="runs of our REST path and of the plain loop"
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=["cdc", "stripe", "rest", "sql", "anomalies", "observe"],
        help="run only this benchmark (repeatable); default: all",
    )
    parser.add_argument(
        "--sql-rows", type=int, default=5_000_000, help="rows of the generated SQL source table"
    )
    parser.add_argument(
        "--cdc-changes", type=int, default=1_000_000, help="changes applied through Postgres CDC"
    )
    parser.add_argument(
        "--cdc-snapshot-rows", type=int, default=1_000_000, help="rows in the CDC table's snapshot"
    )
    args = parser.parse_args(argv)
    only = set(args.only or ["cdc", "stripe", "rest", "sql", "anomalies", "observe"])

    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="elt-bench-"))
    try:
        # Before apply_runtime_environment: it derives dlt's working folders from ELT_DATA_DIR.
        os.environ["ELT_DATA_DIR"] = str(tmp / "data")
        config.apply_runtime_environment()

        _, warm_s = _timed(lambda: warm_up(tmp))
        log(f"dlt warm-up in {warm_s:.1f}s")

        figures: Figures = {}
        if "cdc" in only and args.cdc_changes > 0:
            from bench.cdc import bench_cdc

            figures |= bench_cdc(tmp, args.cdc_changes, args.cdc_snapshot_rows)
        if "stripe" in only:
            log(f"generating data set for {args.orders} orders")
            data, gen_s = _timed(lambda: dataset.generate(args.orders))
            log(f"generated in {gen_s:.1f}s")
            figures |= bench_stripe(tmp, data)
        if "rest" in only and args.rest_records > 0:
            figures |= bench_rest(tmp, args.rest_records, max(1, args.rest_repeats))
        if "sql" in only and args.sql_rows > 0:
            from bench.sql import bench_sql

            figures |= bench_sql(tmp, args.sql_rows)
        if "anomalies" in only:
            from bench.anomalies import bench_anomalies

            figures |= bench_anomalies()
        if "observe" in only:
            from bench.observe import bench_observe

            figures |= bench_observe(tmp, args.orders, repeats=15, log=log)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    for name, value in figures.items():
        print(f"{name}: {_format(name, value)}", flush=True)
    log(f"total wall time {time.perf_counter() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
