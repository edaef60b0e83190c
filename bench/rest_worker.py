"""One REST benchmark client, run in its own process by ``bench/run.py``.

Why a process: the stand-in server runs in the parent, so client and server use both
cores without sharing a GIL (as a real API and its client would), and the child's
peak memory (``ru_maxrss``) is the client's alone.

``python -m bench.rest_worker MODE BASE_URL TOKEN WORKDIR [LIMIT]`` prints one JSON
line: ``{"records": n, "seconds": s, "maxrss_mb": m}``. Modes:

* ``ours``: the declarative fast path (``dlt_sources/rest/example_tickets.yml``) into
  DuckDB with parquet, exactly as ``elt run --source example_tickets`` runs it;
* ``plain``: requests + orjson + ``pyarrow.RecordBatch.from_pylist`` + DuckDB;
* ``dlt_defaults``: dlt's own ``rest_api`` source with dlt's defaults;
* ``transfer``: requests only, bodies discarded (what the server and HTTP cost).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import requests

PAGE_SIZE = 1000


def _pipeline(name: str, workdir: Path, dataset: str) -> Any:
    import dlt

    return dlt.pipeline(
        pipeline_name=name,
        destination=dlt.destinations.duckdb(str(workdir / f"{name}.duckdb")),
        dataset_name=dataset,
        pipelines_dir=str(workdir / "pipelines"),
    )


def _rows(pipeline: Any, table: str) -> int:
    return pipeline.last_trace.last_normalize_info.row_counts.get(table, 0)


def _log_steps(pipeline: Any) -> None:
    """Seconds per dlt step, to stderr: where a slow run spent its time."""
    steps = [
        f"{step.step} {(step.finished_at - step.started_at).total_seconds():.2f}s"
        for step in pipeline.last_trace.steps
        if step.finished_at is not None
    ]
    print("steps: " + ", ".join(steps), file=sys.stderr, flush=True)


def run_ours(base_url: str, token: str, workdir: Path, limit: int | None) -> int:
    os.environ["SOURCES__EXAMPLE_TICKETS__BASE_URL"] = base_url
    os.environ["SOURCES__EXAMPLE_TICKETS__TOKEN"] = token
    from dlt_sources.rest import DEFAULT_DIR, declared_sources

    source = declared_sources(DEFAULT_DIR)["example_tickets"].factory()
    pipeline = _pipeline("bench_rest_ours", workdir, "raw_example_tickets")
    pipeline.run(source, loader_file_format="parquet").raise_on_failed_jobs()
    _log_steps(pipeline)
    return _rows(pipeline, "tickets")


def _pages(base_url: str, token: str, limit: int | None) -> Iterator[bytes]:
    """Raw page bodies, cursor-paged with one keep-alive session; ``limit`` caps the records."""
    params: dict[str, Any] = {"limit": PAGE_SIZE}
    seen = 0
    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {token}"
        while True:
            response = session.get(f"{base_url}/tickets", params=params, timeout=30)
            response.raise_for_status()
            body = response.content
            yield body
            seen += PAGE_SIZE
            # the cursor is the body's last field: read it without decoding the page
            cursor = orjson.loads(body[body.rindex(b'"next_cursor":') + 14 : -1])
            if not cursor or (limit is not None and seen >= limit):
                return
            params["cursor"] = cursor


def run_transfer(base_url: str, token: str, workdir: Path, limit: int | None) -> int:
    records = 0
    for body in _pages(base_url, token, limit):
        records += body.count(b'"subject"')  # one per ticket; cheaper than decoding
    return records


def run_plain(base_url: str, token: str, workdir: Path, limit: int | None) -> int:
    import duckdb
    import pyarrow as pa

    batches = [
        pa.RecordBatch.from_pylist(orjson.loads(body)["data"]) for body in _pages(base_url, token, limit)
    ]
    pages = pa.Table.from_batches(batches)  # noqa: F841 - read by DuckDB's replacement scan
    with duckdb.connect(str(workdir / "plain.duckdb")) as con:
        con.execute("create or replace table tickets as select * from pages")
        return con.execute("select count(*) from tickets").fetchall()[0][0]


def run_dlt_defaults(base_url: str, token: str, workdir: Path, limit: int | None) -> int:
    from dlt.sources.rest_api import rest_api_source

    params: dict[str, Any] = {"limit": PAGE_SIZE}
    source = rest_api_source(
        {
            "client": {
                "base_url": base_url,
                "auth": {"type": "bearer", "token": token},
                "paginator": {"type": "cursor", "cursor_path": "next_cursor", "cursor_param": "cursor"},
            },
            "resources": [
                {
                    "name": "tickets",
                    "primary_key": "id",
                    "write_disposition": "merge",
                    "endpoint": {"path": "tickets", "params": params, "data_selector": "data"},
                }
            ],
        }
    )
    resource_ = source.resources["tickets"]
    if limit is not None:
        resource_.add_limit(max(1, limit // PAGE_SIZE))
    pipeline = _pipeline("bench_rest_dlt_defaults", workdir, "raw_tickets_dlt")
    pipeline.run(source).raise_on_failed_jobs()
    return _rows(pipeline, "tickets")


MODES = {"ours": run_ours, "plain": run_plain, "dlt_defaults": run_dlt_defaults, "transfer": run_transfer}


def peak_rss_mb() -> float:
    """This process's peak resident memory since it started.

    ``/proc/self/status`` VmHWM, not ``getrusage``: on Linux ``ru_maxrss`` of an exec'd
    child starts from its parent's high-water mark, and the parent here holds the
    server's page cache.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str]) -> int:
    mode, base_url, token, workdir = argv[:4]
    limit = int(argv[4]) if len(argv) > 4 and argv[4] else None
    from flows import config

    config.apply_runtime_environment()
    path = Path(workdir)
    path.mkdir(parents=True, exist_ok=True)
    if mode in ("ours", "dlt_defaults"):
        import dlt  # noqa: F401 - imported before timing, like a flow worker that is already up
        import pyarrow  # noqa: F401
    profile = os.environ.get("BENCH_PROFILE")
    started = time.perf_counter()
    if profile:
        import cProfile

        with cProfile.Profile() as profiler:
            records = MODES[mode](base_url, token, path, limit)
        profiler.dump_stats(profile)
    else:
        records = MODES[mode](base_url, token, path, limit)
    seconds = time.perf_counter() - started
    print(json.dumps({"records": records, "seconds": seconds, "maxrss_mb": peak_rss_mb()}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
