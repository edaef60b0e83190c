"""CDC benchmark: changes per second through the Postgres CDC source, end to end.

A generated ``events`` table (bigint, timestamptz, text, numeric(12,2), float8, bool,
jsonb) is snapshotted by the source, then ``--cdc-changes`` changes (inserts, updates
of rows changed several times, deletes) are committed in 10,000-change transactions
and one pipeline run applies them: read from the slot, decode, collapse per key, write
parquet, merge into DuckDB. Baseline in the same run: the raw read of the same changes
from a second slot (psycopg2 ``read_message`` without decoding), the floor for any
Python consumer. The pipeline runs in a child process so its peak memory is its own.

Figures: ``cdc_changes_per_s``, ``cdc_stream_floor_changes_per_s``, ``cdc_vs_floor_ratio``,
``cdc_snapshot_rows_per_s``, ``cdc_peak_memory_mb``.
Run: ``python -m bench.run --only cdc [--cdc-changes N]``.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import psycopg2
import psycopg2.extras

from standins.postgres import running_postgres

TABLE_SQL = """
create table events (
    id bigint primary key,
    account_id bigint not null,
    kind text not null,
    amount numeric(12, 2) not null,
    score float8,
    active boolean not null,
    payload jsonb,
    created_at timestamptz not null,
    updated_at timestamptz not null,
    note text
)
"""
SEED_SQL = """
insert into events
select g, g %% 5000, (array['order', 'refund', 'login', 'visit'])[1 + g %% 4], (g %% 100000) / 100.0,
       g * 0.5, g %% 2 = 0, jsonb_build_object('n', g, 'tag', 'seed'), now() - interval '1 day', now(),
       'note ' || g
from generate_series(%s, %s) g
"""
ROLE = "elt_cdc_bench"
SLOT, FLOOR_SLOT, PUBLICATION = "elt_bench", "bench_floor", "elt_bench"
TRANSACTION_CHANGES = 10_000


def _log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _admin(dsn: str) -> psycopg2.extensions.connection:
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    return conn


def prepare(admin_dsn: str, rows: int) -> None:
    """The table, the replication role and the admin's publication."""
    with _admin(admin_dsn) as conn, conn.cursor() as cur:
        cur.execute(TABLE_SQL)
        cur.execute(SEED_SQL, (1, rows))
        cur.execute(f"create role {ROLE} login replication")
        cur.execute(f"grant select on events to {ROLE}")
        cur.execute(f"create publication {PUBLICATION} for table events")
        cur.execute("analyze events")


def make_changes(admin_dsn: str, seeded: int, total: int) -> int:
    """Commit ``total`` changes: per transaction 40% inserts, 40% updates (each row twice), 20% deletes."""
    conn = psycopg2.connect(admin_dsn)
    made, next_id, low = 0, seeded + 1, 1
    with conn.cursor() as cur:
        while made < total:
            size = min(TRANSACTION_CHANGES, total - made)
            inserts, updates, deletes = size * 4 // 10, size * 2 // 10, size - size * 4 // 10 - size * 4 // 10
            cur.execute(SEED_SQL, (next_id, next_id + inserts - 1))
            for _ in range(2):  # the same rows twice: the run collapses them
                cur.execute(
                    "update events set amount = amount + 1, updated_at = now(), active = not active "
                    "where id between %s and %s",
                    (low, low + updates - 1),
                )
            cur.execute(
                "delete from events where id between %s and %s", (low + updates, low + updates + deletes - 1)
            )
            conn.commit()
            made += inserts + 2 * updates + deletes
            next_id += inserts
            low += updates + deletes
    conn.close()
    return made


def read_floor(dsn: str, until_lsn: str) -> int:
    """Baseline: every message of the changes read from a second slot, nothing decoded."""
    conn = psycopg2.connect(dsn, connection_factory=psycopg2.extras.LogicalReplicationConnection)
    cur = conn.cursor()
    cur.start_replication(
        slot_name=FLOOR_SLOT, decode=False, options={"proto_version": "1", "publication_names": PUBLICATION}
    )
    high, low = (int(part, 16) for part in until_lsn.split("/"))
    target = (high << 32) | low
    messages = 0
    while True:
        message = cur.read_message()
        if message is None:
            if cur.wal_end >= target:
                break
            cur.send_feedback(reply=True)
            time.sleep(0.001)
            continue
        messages += message.payload[0] in b"IUD"
    conn.close()
    return messages


def _worker(db_path: str, pipelines: str) -> None:
    """One pipeline run of the CDC source (settings from the environment); JSON on stdout."""
    import dlt

    from dlt_sources.postgres_cdc import after_load, replication_resource, resolve_settings
    from flows.config import apply_runtime_environment

    apply_runtime_environment()

    @dlt.source(name="bench_cdc", max_table_nesting=0)
    def bench_source():  # type: ignore[no-untyped-def]
        yield replication_resource("bench_cdc", ["events"], resolve_settings("bench_cdc"))

    pipeline = dlt.pipeline(
        pipeline_name="bench_cdc",
        destination=dlt.destinations.duckdb(db_path),
        dataset_name="raw_bench_cdc",
        pipelines_dir=pipelines,
    )
    started = time.perf_counter()
    pipeline.run(bench_source(), loader_file_format="parquet").raise_on_failed_jobs()
    after_load(pipeline, "bench_cdc")
    seconds = time.perf_counter() - started
    counts = pipeline.last_trace.last_normalize_info.row_counts
    steps = {
        step.step: round((step.finished_at - step.started_at).total_seconds(), 2)
        for step in pipeline.last_trace.steps
    }
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps({"seconds": seconds, "rows": counts.get("events", 0), "maxrss_mb": rss_mb, "steps": steps})
    )


def _run_worker(tmp: Path, env: dict[str, str]) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "bench.cdc", str(tmp / "cdc.duckdb"), str(tmp / "cdc-pipelines")],
        capture_output=True,
        text=True,
        env=os.environ | env,
        timeout=3600,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"cdc bench worker failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _warehouse_rows(tmp: Path) -> int:
    import duckdb

    with duckdb.connect(str(tmp / "cdc.duckdb"), read_only=True) as con:
        return con.execute("select count(*) from raw_bench_cdc.events").fetchone()[0]


def bench_cdc(tmp: Path, changes: int, snapshot_rows: int) -> dict[str, float]:
    with running_postgres(tmp / "cdc-pg", durable=False) as pg:
        admin_dsn = pg.dsn()
        _log(f"cdc: seeding {snapshot_rows} rows")
        prepare(admin_dsn, snapshot_rows)
        env = {
            "SOURCES__BENCH_CDC__CREDENTIALS": pg.dsn(user=ROLE),
            "SOURCES__BENCH_CDC__SLOT_NAME": SLOT,
            "SOURCES__BENCH_CDC__PUBLICATION": PUBLICATION,
        }
        snapshot = _run_worker(tmp, env)
        _log(
            f"cdc: snapshot {snapshot['rows']} rows in {snapshot['seconds']:.2f}s, steps {snapshot['steps']}"
        )
        with _admin(admin_dsn) as conn, conn.cursor() as cur:
            cur.execute("select pg_create_logical_replication_slot(%s, 'pgoutput')", (FLOOR_SLOT,))
        made, make_s = _timed(lambda: make_changes(admin_dsn, snapshot_rows, changes))
        with _admin(admin_dsn) as conn, conn.cursor() as cur:
            cur.execute("select pg_current_wal_insert_lsn()::text, (select count(*) from events)")
            until_lsn, source_rows = cur.fetchone()
        _log(f"cdc: committed {made} changes in {make_s:.1f}s")
        floor_messages, floor_s = _timed(lambda: read_floor(pg.dsn(user=ROLE), until_lsn))
        _log(f"cdc: floor read {floor_messages} change messages in {floor_s:.2f}s")
        run = _run_worker(tmp, env)
        _log(
            f"cdc: pipeline applied {made} changes ({run['rows']} rows after collapse) in "
            f"{run['seconds']:.2f}s, steps {run['steps']}, peak RSS {run['maxrss_mb']:.0f} MB"
        )
        if _warehouse_rows(tmp) != source_rows:
            _log(f"cdc: WARNING warehouse has {_warehouse_rows(tmp)} rows, source {source_rows}")
    rate = made / run["seconds"]
    floor = floor_messages / floor_s
    return {
        "cdc_changes_per_s": rate,
        "cdc_stream_floor_changes_per_s": floor,
        "cdc_vs_floor_ratio": rate / floor,
        "cdc_snapshot_rows_per_s": snapshot["rows"] / snapshot["seconds"],
        "cdc_peak_memory_mb": max(snapshot["maxrss_mb"], run["maxrss_mb"]),
    }


def _timed(fn):  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


if __name__ == "__main__":
    _worker(sys.argv[1], sys.argv[2])
