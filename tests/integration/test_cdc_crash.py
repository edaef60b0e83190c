"""SIGKILL at random points of a CDC run, then a re-run: the warehouse equals the source.

The pipeline runs in a child process (this file, run as a script) that prints a marker
before each step: every yielded batch (during the snapshot or the change read), then
normalize, load, and after the load (before the next run acknowledges the slot). The
test kills it with SIGKILL a random moment after a random marker, sometimes also wipes
the local pipeline folder (a fresh worker), and re-runs it to the end.
"""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.cdc import (
    ITEM_COLUMNS,
    ITEMS_SQL,
    NOTE_COLUMNS,
    SOURCE,
    RandomWorkload,
    assert_replicated,
    cdc_test_source,
    create_database,
    warehouse_rows,
)
from tests.support.postgres import ModuleDatabases

pytestmark = pytest.mark.slow

DATASET = "raw_cdc_crash"
MARKERS = ["batch", "normalize", "load", "loaded"]


def start_worker(db_path: Path, pipelines: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, str(db_path), str(pipelines)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def kill_after(worker: subprocess.Popen[str], marker: str, delay_s: float) -> str:
    """SIGKILL the worker ``delay_s`` after it prints ``marker``; returns what it reached."""
    assert worker.stdout is not None
    reached = "start"
    for line in worker.stdout:
        reached = line.strip()
        if reached == marker:
            time.sleep(delay_s)
            break
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=60)
    return reached


def test_sigkill_at_random_points_then_rerun_equals_source(
    postgres_databases: ModuleDatabases, tmp_path: Path
) -> None:
    import os

    name = postgres_databases.name("crash")
    database = create_database(postgres_databases.server, name, ITEMS_SQL, ["items", "notes"])
    env = os.environ | database.environment()
    rng = random.Random(4242)
    workload = RandomWorkload(rng)
    database.execute(*[workload.insert_item() for _ in range(800)])
    db_path, pipelines = tmp_path / "warehouse.duckdb", tmp_path / "pipelines"
    reached = []
    for round_number in range(5):
        if round_number:
            for _ in range(40):
                database.execute(*workload.statements())
        # WHEN a run is killed at a random point (round 0: during the initial snapshot)
        marker = "batch" if round_number == 0 else rng.choice(MARKERS)
        reached.append(kill_after(start_worker(db_path, pipelines, env), marker, rng.uniform(0, 0.3)))
        if rng.random() < 0.3:
            shutil.rmtree(pipelines, ignore_errors=True)  # and the next run starts on a fresh worker
        for _ in range(5):  # changes that land between the crash and the re-run
            database.execute(*workload.statements())
        # AND the run is repeated to its end
        rerun = start_worker(db_path, pipelines, env)
        _, errors = rerun.communicate(timeout=180)
        assert rerun.returncode == 0, errors[-3000:]
        # THEN the warehouse equals the source, with no duplicate keys
        assert_replicated(database, db_path, DATASET, "items", ITEM_COLUMNS)
        assert_replicated(database, db_path, DATASET, "notes", NOTE_COLUMNS)
        [(rows, keys)] = warehouse_rows(db_path, DATASET, "items", ["count(*)", "count(distinct id)"])
        assert rows == keys
    assert len(set(reached)) > 1, reached  # the kills landed at different points


def _worker(db_path: str, pipelines_dir: str) -> None:
    """One CDC run, step by step, printing a marker before each; pending loads finish first
    (as ``pipeline.run`` does), so the slot is only ever acknowledged up to the warehouse."""
    import dlt

    from dlt_sources.common.packages import discard_committed_extracts
    from dlt_sources.postgres_cdc import after_load
    from flows.config import apply_runtime_environment

    apply_runtime_environment()

    def mark(name: str) -> None:
        print(name, flush=True)

    pipeline = dlt.pipeline(
        pipeline_name="cdc_crash",
        destination=dlt.destinations.duckdb(db_path),
        dataset_name=DATASET,
        pipelines_dir=pipelines_dir,
    )
    discard_committed_extracts(pipeline)  # as run_source does
    if pipeline.has_pending_data:
        pipeline.normalize()
        pipeline.load()
    source = cdc_test_source(["items", "notes"])
    for resource in source.resources.values():
        resource.add_map(lambda item: (mark("batch"), item)[1])
    pipeline.extract(source, loader_file_format="parquet")
    mark("normalize")
    pipeline.normalize()
    mark("load")
    pipeline.load().raise_on_failed_jobs()
    mark("loaded")
    after_load(pipeline, SOURCE)
    mark("done")


if __name__ == "__main__":
    _worker(sys.argv[1], sys.argv[2])
