"""SQL database source benchmark: our fast path against PostgreSQL's own COPY floor.

Run by ``python -m bench.run --only sql [--sql-rows N]``. It generates an 11-column
table (bigint, timestamptz, text, numeric(12,2), float8, bool, jsonb, …) in a local
PostgreSQL, then measures in the same run:

* ``sql_copy_floor_rows_per_s``: ``COPY (select …) TO STDOUT (FORMAT binary)`` into a
  sink that drops the bytes — how fast the server alone hands the rows out;
* ``sql_rows_per_s``: our source (``dlt_sources/sql_database``) loading the whole table
  into DuckDB, exactly as ``elt run`` does (parquet, replace on the first full read);
* ``sql_dlt_defaults_rows_per_s``: dlt's ``sql_table`` with its defaults on a 200k-row
  sample (it needs minutes for millions);
* ``incremental_empty_s`` / ``incremental_1pct_s``: ``pipeline.run`` time of a run that
  finds nothing new, and of one after 1% of the rows were updated.

And the floors of the two ends, to tell our cost from theirs:

* ``sql_read_floor_rows_per_s``: ADBC streaming the table as Arrow batches that are dropped
  (the server's COPY plus the driver's decoding, nothing written);
* ``sql_warehouse_floor_rows_per_s``: DuckDB alone inserting our full load's parquet file
  into a fresh database file (its compressed storage, checkpoint included);
* ``sql_cpu_ceiling_rows_per_s``: the rate if every core did nothing but those two floors'
  work (their CPU seconds over the cores), with no writing of load files, no dlt and
  reading perfectly overlapped with inserting: no pipeline from this server into this
  DuckDB on this machine can beat it;
* ``incremental_1pct_merge_floor_s``: DuckDB alone applying the 1% run's rows (staging
  table, delete, insert, close) to a copy of the warehouse as it was before that run.

Each load runs in a child process (``python -m bench.sql worker …``), which reports its
own peak RSS and the seconds of dlt's extract / normalize / load steps; each floor runs in
its own child (``python -m bench.sql floor …``) so its CPU seconds are its own.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg2

from standins.postgres import running_postgres

TABLE = "bench_rows"
SAMPLE_TABLE = "bench_sample"
DLT_DEFAULTS_ROWS = 200_000
PARTITIONS = 2
SOURCE = "sqlbench"

SCHEMA_SQL = f"""
create table {TABLE} (
    id bigint primary key,
    created_at timestamptz not null,
    updated_at timestamptz not null,
    customer text not null,
    amount numeric(12, 2) not null,
    score float8,
    active bool not null,
    payload jsonb,
    quantity integer not null,
    note text,
    category text not null
)
"""
FILL_SQL = f"""
insert into {TABLE}
select g,
       timestamptz '2024-01-01' + g * interval '1 second',
       timestamptz '2024-01-01' + g * interval '1 second',
       'customer-' || mod(g, 100000),
       round(mod(g, 1000000) / 7.0, 2),
       g / 3.0,
       mod(g, 2) = 0,
       jsonb_build_object(
           'sku', 'SKU-' || mod(g, 5000), 'qty', mod(g, 17), 'tags', jsonb_build_array('a', 'b')
       ),
       mod(g, 100),
       case when mod(g, 10) = 0 then null else 'note about row ' || g end,
       'category-' || mod(g, 50)
from generate_series(%s, %s) g
"""
CONFIG = f"""
credentials: "{{{{ secrets.sources.{SOURCE}.credentials }}}}"
tables:
  - name: {TABLE}
    primary_key: id
    cursor: updated_at
    partitions: {PARTITIONS}
"""


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class _DiscardSink:
    """``copy_expert`` target that drops the bytes: the floor is the server's own speed."""

    def __init__(self) -> None:
        self.bytes = 0

    def write(self, data: bytes) -> int:
        self.bytes += len(data)
        return len(data)


def _execute(dsn: str, *statements: tuple[str, Any]) -> None:
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        for sql, params in statements:
            cur.execute(sql, params)
    conn.close()


def generate(dsn: str, rows: int) -> None:
    """The table, its cursor index, a sample copy for dlt's defaults, and fresh statistics."""
    _execute(dsn, (SCHEMA_SQL, None))
    chunk = 1_000_000
    for first in range(1, rows + 1, chunk):
        _execute(dsn, (FILL_SQL, (first, min(rows, first + chunk - 1))))
    _execute(
        dsn,
        (f"create index on {TABLE} (updated_at)", None),
        (f"create table {SAMPLE_TABLE} as select * from {TABLE} order by id limit %s", (DLT_DEFAULTS_ROWS,)),
        (f"alter table {SAMPLE_TABLE} add primary key (id)", None),
        (f"vacuum analyze {TABLE}", None),
        (f"vacuum analyze {SAMPLE_TABLE}", None),
    )


def copy_floor(dsn: str) -> tuple[int, float]:
    """Rows and seconds of a binary COPY of the whole table to a discarding sink."""
    conn = psycopg2.connect(dsn)
    sink = _DiscardSink()
    started = time.perf_counter()
    with conn.cursor() as cur:
        cur.copy_expert(f"copy (select * from {TABLE}) to stdout (format binary)", sink)
        rows = cur.rowcount
    seconds = time.perf_counter() - started
    conn.close()
    return rows, seconds


def _server_cpu_s(dsn: str, pgdata: Path) -> float:
    """CPU seconds of the server's ended child processes (its backends), from /proc.

    Read around a load, it shows how much of the 2 cores PostgreSQL itself used. It first
    waits for the backends of earlier statements (the COPY floor, the 1% update) to exit,
    so their CPU is not counted against the next load."""
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    others = (
        "select count(*) from pg_stat_activity"
        " where backend_type = 'client backend' and pid <> pg_backend_pid()"
    )
    with conn.cursor() as cur:
        for _ in range(100):
            cur.execute(others)
            if cur.fetchone()[0] == 0:
                break
            time.sleep(0.05)
    conn.close()
    time.sleep(0.2)  # this check's own backend exits and is reaped
    pid = (pgdata / "postmaster.pid").read_text().split()[0]
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")  # cutime + cstime


def _child(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``python -m bench.sql *args``; the JSON object its last line prints."""
    command = [sys.executable, "-m", "bench.sql", *args]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=3600, check=False, env=env or dict(os.environ)
    )
    if done.returncode != 0:
        raise RuntimeError(f"sql bench {' '.join(args[:2])!r} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _worker(mode: str, dsn: str, workdir: Path, pgdata: Path, keep_files: bool = False) -> dict[str, Any]:
    """Run one load in a child process; its JSON result (rows, seconds, steps, CPU, peak RSS,
    load id). ``keep_files`` keeps the load's parquet files for the floors to read again."""
    env = {**os.environ, f"SOURCES__{SOURCE.upper()}__CREDENTIALS": dsn}
    if keep_files:
        env["LOAD__DELETE_COMPLETED_JOBS"] = "false"
    server_before = _server_cpu_s(dsn, pgdata)
    result = _child("worker", mode, str(workdir), env=env)
    server_cpu = _server_cpu_s(dsn, pgdata) - server_before
    log(
        f"sql: {mode}: {result['rows']} rows in {result['seconds']:.2f}s ({result['steps']}), "
        f"CPU worker {result['cpu_s']:.1f}s + server {server_cpu:.1f}s, "
        f"peak RSS {result['maxrss_mb']:.0f} MB"
    )
    return result


def _warehouse(workdir: Path, mode: str) -> Path:
    """The DuckDB file of our loads (full and incremental share it) or of dlt's defaults."""
    return workdir / ("dlt_defaults.duckdb" if mode == "dlt_defaults" else "ours.duckdb")


def _load_files(workdir: Path, load: dict[str, Any]) -> list[str]:
    """The parquet files of the bench table that one kept load wrote."""
    package = workdir / "pipelines" / "bench_ours" / "load" / "loaded" / load["load_id"]
    files = sorted(str(f) for f in package.glob(f"completed_jobs/{TABLE}.*.parquet"))
    if not files:
        raise RuntimeError(f"sql bench: no {TABLE} parquet file kept in {package}")
    return files


def _floors(dsn: str, pgdata: Path, workdir: Path, full: dict[str, Any]) -> dict[str, float]:
    """The read and warehouse floors of the full load, and the CPU ceiling they imply."""
    server_before = _server_cpu_s(dsn, pgdata)
    read = _child("floor", "read", dsn)
    read_server_cpu = _server_cpu_s(dsn, pgdata) - server_before
    log(
        f"sql: read floor (ADBC, batches dropped): {read['rows']:,} rows in {read['seconds']:.2f}s, "
        f"CPU client {read['cpu_s']:.1f}s + server {read_server_cpu:.1f}s"
    )
    files = _load_files(workdir, full)
    warehouse, scratch = _warehouse(workdir, "full"), workdir / "floor.duckdb"
    insert = _child("floor", "insert", str(warehouse), str(scratch), *files)
    log(
        f"sql: warehouse floor (DuckDB insert of our parquet): {insert['rows']:,} rows in "
        f"{insert['seconds']:.2f}s, CPU {insert['cpu_s']:.1f}s"
    )
    if read["rows"] != full["rows"] or insert["rows"] != full["rows"]:
        moved = f"{read['rows']} / {insert['rows']} rows, our load {full['rows']}"
        raise RuntimeError(f"sql bench: the read / insert floors moved {moved}")
    cores = len(os.sched_getaffinity(0))
    floor_cpu = read["cpu_s"] + read_server_cpu + insert["cpu_s"]
    return {
        "sql_read_floor_rows_per_s": read["rows"] / read["seconds"],
        "sql_warehouse_floor_rows_per_s": insert["rows"] / insert["seconds"],
        "sql_cpu_ceiling_rows_per_s": full["rows"] / (floor_cpu / cores),
    }


def bench_sql(tmp: Path, rows: int) -> dict[str, float]:
    """All SQL figures, against one generated table."""
    workdir = tmp / "sql"
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / f"{SOURCE}.yml").write_text(CONFIG)
    with running_postgres(tmp / "sql-pg", durable=False) as pg:
        dsn = pg.dsn()
        log(f"sql: generating {rows:,} rows")
        started = time.perf_counter()
        generate(dsn, rows)
        log(f"sql: generated in {time.perf_counter() - started:.1f}s")

        copy_rows, copy_s = copy_floor(dsn)
        log(f"sql: COPY floor {copy_rows:,} rows in {copy_s:.2f}s")
        full = _worker("full", dsn, workdir, pg.pgdata, keep_files=True)
        floors = _floors(dsn, pg.pgdata, workdir, full)
        empty = _worker("incremental", dsn, workdir, pg.pgdata)
        before_1pct = workdir / "before-1pct.duckdb"
        shutil.copy(_warehouse(workdir, "incremental"), before_1pct)
        changed = max(1, rows // 100)
        _execute(
            dsn,
            (
                f"update {TABLE} set updated_at = now(), amount = amount + 1 "
                f"where id in (select id from {TABLE} order by random() limit %s)",
                (changed,),
            ),
        )
        one_pct = _worker("incremental", dsn, workdir, pg.pgdata, keep_files=True)
        if one_pct["rows"] != changed:
            log(f"sql: WARNING the 1% run loaded {one_pct['rows']} rows, {changed} were updated")
        merge = _child("floor", "merge", str(before_1pct), *_load_files(workdir, one_pct))
        if merge["rows"] != one_pct["rows"]:
            staged = f"{merge['rows']} rows, our 1% run {one_pct['rows']}"
            raise RuntimeError(f"sql bench: the merge floor staged {staged}")
        log(f"sql: 1% merge floor (DuckDB alone, close included): {merge['seconds']:.2f}s")
        defaults = _worker("dlt_defaults", dsn, workdir, pg.pgdata)

    if full["rows"] != copy_rows:
        log(f"sql: WARNING our load wrote {full['rows']} rows, COPY read {copy_rows}")
    rate = full["rows"] / full["seconds"]
    floor = copy_rows / copy_s
    return {
        "sql_rows_per_s": rate,
        "sql_copy_floor_rows_per_s": floor,
        "sql_vs_floor_ratio": rate / floor,
        **floors,
        "sql_vs_cpu_ceiling_ratio": rate / floors["sql_cpu_ceiling_rows_per_s"],
        "sql_dlt_defaults_rows_per_s": defaults["rows"] / defaults["seconds"],
        "sql_full_load_s": full["seconds"],
        "incremental_empty_s": empty["seconds"],
        "incremental_1pct_s": one_pct["seconds"],
        "incremental_1pct_vs_full_ratio": one_pct["seconds"] / full["seconds"],
        "incremental_1pct_merge_floor_s": merge["seconds"],
        "incremental_1pct_merge_floor_vs_full_ratio": merge["seconds"] / full["seconds"],
        "sql_peak_memory_mb": max(r["maxrss_mb"] for r in (full, empty, one_pct)),
    }


# ------------------------------------------------------------------ child process
def _run_worker(mode: str, workdir: Path) -> dict[str, Any]:
    import dlt

    from flows.config import apply_runtime_environment

    apply_runtime_environment()
    pipeline = dlt.pipeline(
        pipeline_name=f"bench_{mode if mode == 'dlt_defaults' else 'ours'}",
        destination=dlt.destinations.duckdb(str(_warehouse(workdir, mode))),
        dataset_name=f"raw_{SOURCE}",
        pipelines_dir=str(workdir / "pipelines"),
    )
    if mode == "dlt_defaults":
        from dlt.sources.sql_database import sql_table

        credentials = os.environ[f"SOURCES__{SOURCE.upper()}__CREDENTIALS"]
        source: Any = sql_table(
            credentials=credentials.replace("postgresql://", "postgresql+psycopg2://"), table=SAMPLE_TABLE
        )
        run_options: dict[str, Any] = {}
    else:
        from dlt_sources.sql_database import declared_databases

        source = declared_databases(workdir)[SOURCE].factory()
        run_options = {"loader_file_format": "parquet"}
    started = time.perf_counter()
    pipeline.run(source, **run_options).raise_on_failed_jobs()
    seconds = time.perf_counter() - started
    counts = pipeline.last_trace.last_normalize_info.row_counts
    steps = ", ".join(
        f"{step.step} {(step.finished_at - step.started_at).total_seconds():.2f}s"
        for step in pipeline.last_trace.steps
        if step.finished_at is not None
    )
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "rows": sum(n for table, n in counts.items() if not table.startswith("_dlt")),
        "seconds": seconds,
        "steps": steps,
        "load_id": next(iter(pipeline.last_trace.last_normalize_info.loads_ids[-1:]), None),
        # user + system seconds of every thread (readers, parquet writer, DuckDB), imports
        # included: against `seconds` it shows how busy the 2 cores were
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "maxrss_mb": usage.ru_maxrss / 1024,
    }


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _measured(work: Any) -> dict[str, Any]:
    """``work()`` (which returns its row count) with its wall and CPU seconds, imports excluded."""
    cpu, started = _cpu_s(), time.perf_counter()
    rows = work()
    return {"rows": rows, "seconds": time.perf_counter() - started, "cpu_s": _cpu_s() - cpu}


def _read_floor(dsn: str) -> dict[str, Any]:
    """The whole table through ADBC as Arrow batches, dropped: what any Arrow reader pays."""
    import adbc_driver_postgresql.dbapi as adbc

    def read() -> int:
        with adbc.connect(dsn) as conn, conn.cursor() as cursor:
            cursor.execute(f"select * from {TABLE}")
            return sum(batch.num_rows for batch in cursor.fetch_record_batch())

    return _measured(read)


def _insert_floor(warehouse: Path, scratch: Path, files: list[str]) -> dict[str, Any]:
    """DuckDB alone inserting ``files`` into a fresh file, into a table typed as ours."""
    import duckdb

    conn = duckdb.connect(str(scratch))
    conn.execute(f"attach '{warehouse}' as warehouse (read_only)")
    conn.execute(f"create table {TABLE} as select * from warehouse.raw_{SOURCE}.{TABLE} limit 0")
    conn.execute("detach warehouse")

    def insert() -> int:
        conn.execute(f"insert into {TABLE} by name select * from read_parquet({files!r}, union_by_name=true)")
        inserted = conn.execute(f"select count(*) from {TABLE}").fetchone()[0]
        conn.close()  # the checkpoint writes the compressed storage
        return inserted

    return _measured(insert)


def _merge_floor(warehouse: Path, files: list[str]) -> dict[str, Any]:
    """DuckDB alone merging ``files`` as dlt's delete-insert does: open, stage the rows, delete and
    insert in one transaction, close. The staging table is kept, as dlt keeps its own."""
    import duckdb

    target = f"raw_{SOURCE}.{TABLE}"

    def merge() -> int:
        conn = duckdb.connect(str(warehouse))
        conn.execute("create schema merge_floor_staging")
        conn.execute(f"create table merge_floor_staging.{TABLE} as select * from {target} limit 0")
        conn.execute(
            f"insert into merge_floor_staging.{TABLE} by name "
            f"select * from read_parquet({files!r}, union_by_name=true)"
        )
        conn.execute("begin")
        conn.execute(
            f"delete from {target} as d where exists "
            f"(select 1 from merge_floor_staging.{TABLE} as s where s.id = d.id)"
        )
        conn.execute(f"insert into {target} by name select * from merge_floor_staging.{TABLE}")
        conn.execute("commit")
        staged = conn.execute(f"select count(*) from merge_floor_staging.{TABLE}").fetchone()[0]
        conn.close()  # the checkpoint (and DuckDB's vacuum of the deleted rows) runs here
        return staged

    return _measured(merge)


def _run_floor(kind: str, args: list[str]) -> dict[str, Any]:
    if kind == "read":
        return _read_floor(args[0])
    if kind == "insert":
        return _insert_floor(Path(args[0]), Path(args[1]), args[2:])
    if kind == "merge":
        return _merge_floor(Path(args[0]), args[1:])
    raise SystemExit(f"unknown floor {kind!r}")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "worker":
        print(json.dumps(_run_worker(sys.argv[2], Path(sys.argv[3]))), flush=True)
        sys.exit(0)
    if len(sys.argv) >= 4 and sys.argv[1] == "floor":
        print(json.dumps(_run_floor(sys.argv[2], sys.argv[3:])), flush=True)
        sys.exit(0)
    sys.exit("usage: python -m bench.run --only sql [--sql-rows N]")
