"""Ingest benchmark: our dlt pipelines versus the fastest plain client for each source.

Why: an absolute rows/s figure says little on a shared 2-core machine; a baseline measured
in the same run, against the same server and data, turns it into a ratio that tells how
much of the source's raw speed our pipeline keeps. Both sources are the local demo
stand-ins (a real PostgreSQL and the Stripe-compatible HTTP API), seeded with one data set.

Output: one ``name: value`` line per figure on stdout; progress goes to stderr.
Run from the project root: ``python -m bench.run [--orders N]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import psycopg2
import requests

from flows import config
from flows.demo import DEMO_STRIPE_KEY, dataset, environment, shop_db, stripe_store_for
from flows.demo.postgres import running_postgres
from flows.demo.stripe_api import serve_stripe

SHOP_TABLES = ("customers", "products", "orders", "order_items")
STRIPE_PAGE_SIZE = 100

Figures = dict[str, float]


def log(message: str) -> None:
    """Progress to stderr, so stdout stays machine-readable."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class _DiscardSink:
    """A file-like target for ``copy_expert`` that drops the bytes: the baseline measures
    how fast PostgreSQL can hand the rows out, not how fast we can store them."""

    def __init__(self) -> None:
        self.bytes = 0

    def write(self, data: bytes) -> int:
        self.bytes += len(data)
        return len(data)


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


# --------------------------------------------------------------------------- shop
def copy_out_all(dsn: str) -> tuple[int, int]:
    """Baseline: binary ``COPY ... TO STDOUT`` of every shop table; returns (rows, bytes)."""
    sink = _DiscardSink()
    rows = 0
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            for table in SHOP_TABLES:
                cur.copy_expert(f"copy (select * from {table}) to stdout (format binary)", sink)
                rows += cur.rowcount
    finally:
        conn.close()
    return rows, sink.bytes


def bench_shop(tmp: Path, data: dataset.ShopData) -> Figures:
    """Shop PostgreSQL: COPY baseline, then our dlt full load and an empty incremental run."""
    from dlt_sources.shop import shop_source

    with running_postgres(tmp / "pg", durable=False) as pg:
        log("shop: seeding PostgreSQL")
        shop_db.create_database(pg.dsn())
        shop_db.seed(pg.dsn(shop_db.DATABASE), data)
        reader_dsn = pg.dsn(shop_db.DATABASE, user=shop_db.READER_ROLE)

        # Same role and database as the pipeline reads with, so permissions and plans match.
        (copy_rows, copy_bytes), copy_s = _timed(lambda: copy_out_all(reader_dsn))
        log(f"shop: COPY baseline {copy_rows} rows, {copy_bytes / 1e6:.1f} MB in {copy_s:.2f}s")

        with environment({"SOURCES__SHOP__CREDENTIALS": reader_dsn}):
            pipeline = _pipeline("bench_shop", "raw_shop", tmp)
            info, full_s = _timed(lambda: pipeline.run(shop_source(), loader_file_format="parquet"))
            info.raise_on_failed_jobs()
            full_rows = sum(_loaded_rows(pipeline).values())
            log(f"shop: dlt full load {full_rows} rows in {full_s:.2f}s")
            if full_rows != copy_rows:
                log(f"shop: WARNING dlt loaded {full_rows} rows but COPY read {copy_rows}")

            info, empty_s = _timed(lambda: pipeline.run(shop_source(), loader_file_format="parquet"))
            info.raise_on_failed_jobs()
            log(
                f"shop: dlt incremental run loaded {sum(_loaded_rows(pipeline).values())} rows "
                f"in {empty_s:.2f}s"
            )

    copy_rate = copy_rows / copy_s
    dlt_rate = full_rows / full_s
    return {
        "shop_copy_baseline_rows_per_s": copy_rate,
        "shop_dlt_rows_per_s": dlt_rate,
        "shop_dlt_vs_copy_ratio": dlt_rate / copy_rate,
        "shop_incremental_empty_run_s": empty_s,
    }


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


# --------------------------------------------------------------------------- main
def _format(name: str, value: float) -> str:
    """Rates as whole numbers, ratios to 3 decimals, durations to centiseconds."""
    if name.endswith("_per_s"):
        return f"{value:.0f}"
    if name.endswith("_ratio"):
        return f"{value:.3f}"
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
    args = parser.parse_args(argv)

    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="elt-bench-"))
    try:
        # Before apply_runtime_environment: it derives dlt's working folders from ELT_DATA_DIR.
        os.environ["ELT_DATA_DIR"] = str(tmp / "data")
        config.apply_runtime_environment()

        log(f"generating data set for {args.orders} orders")
        data, gen_s = _timed(lambda: dataset.generate(args.orders))
        log(f"generated in {gen_s:.1f}s")
        _, warm_s = _timed(lambda: warm_up(tmp))
        log(f"dlt warm-up in {warm_s:.1f}s")

        figures = bench_shop(tmp, data) | bench_stripe(tmp, data)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    for name, value in figures.items():
        print(f"{name}: {_format(name, value)}", flush=True)
    log(f"total wall time {time.perf_counter() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
