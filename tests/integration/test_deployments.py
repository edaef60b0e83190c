"""The deployments as an operator runs them: a real ``prefect server``, ``elt deploy``, a real
process worker, runs triggered from the CLI and the API, against the demo stand-ins.

Everything listens on 127.0.0.1 on free ports and lives in the test session's folder;
the server and the worker run in their own process groups and are killed at the end.
The server's scheduler is off so that no cron fires in the middle of a test.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import httpx
import psycopg2
import pytest

from dlt_sources.registry import SOURCES
from flows.config import PROJECT_DIR, TELEMETRY_OFF
from flows.ingest import source_tag
from standins import DemoSources, demo_sources
from standins.dataset import charge_object
from tests.support.postgres import Database
from tests.support.prefect_database import copy_template
from tests.support.processes import stop_process_group

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent
N_ORDERS = 300
# the full run, and one deployment per source with a schedule in its registry record
DEPLOYMENTS = {
    "elt/elt-nightly",
    "freshness/freshness",
    "backfill/backfill",
    "build-on-arrival/build-on-arrival",
} | {f"ingest-source/ingest-{name.replace('_', '-')}" for name, spec in SOURCES.items() if spec.schedule}
# Set by tests/conftest.py for the test process; the worker's runs derive their own.
DERIVED = ("DLT_DATA_DIR", "PREFECT_HOME", "DBT_LOG_PATH", "DBT_TARGET_PATH", "PREFECT_API_URL")


# sources landing within this many seconds of the first get one build (flows/on_arrival.py)
BUILD_WINDOW_S = 15


@dataclass
class Platform:
    api: str
    env: dict[str, str]
    workdir: Path
    worker_log: Path
    deploy_output: str
    sources: DemoSources
    # one client for the module's thousands of polls: a new one costs an SSL context (~30 ms)
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30))

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self.request("POST", path, body)

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One API call; a busy SQLite-backed server answers 503 for a moment, as Prefect's client knows."""
        for _ in range(10):
            response = self.http.request(method, f"{self.api}{path}", json=body)
            if response.status_code not in (429, 503):
                break
            time.sleep(1)
        response.raise_for_status()
        return response.json() if response.content else None

    def worker_tail(self) -> str:
        return "\n".join(self.worker_log.read_text(errors="replace").splitlines()[-40:])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """A child in its own process group, so stopping it also stops what it started."""
    with log.open("wb") as out:
        return subprocess.Popen(
            command, env=env, cwd=PROJECT_DIR, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop_unfinished_runs(platform: Platform) -> None:
    """Kill the processes of flow runs a failed test left running (the worker starts them in
    their own sessions, so stopping the worker does not stop them)."""
    unfinished = {"flow_runs": {"state": {"type": {"any_": ["PENDING", "RUNNING", "CANCELLING"]}}}}
    for run in platform.post("/flow_runs/filter", unfinished):
        pid = str(run.get("infrastructure_pid") or "").rpartition(":")[2]
        if pid.isdigit():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(int(pid), signal.SIGKILL)


def wait_healthy(api: str, server: subprocess.Popen[bytes], log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.poll() is None, f"prefect server exited:\n{log.read_text(errors='replace')[-3000:]}"
        try:
            if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"prefect server not healthy after {timeout}s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def platform(session_dir: Path, postgres_database: Database) -> Iterator[Platform]:
    # not tmp_path_factory: a concurrent pytest session prunes old basetemps under PostgreSQL's feet
    workdir = session_dir / "deployments"
    workdir.mkdir()
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    base = {key: value for key, value in os.environ.items() if key not in DERIVED}
    prefect = base | TELEMETRY_OFF | {"PREFECT_HOME": str(workdir / "prefect"), "COLUMNS": "200"}
    server_env = prefect | {
        "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
        "PREFECT_SERVER_UI_ENABLED": "false",
        # a run queued behind its deployment's limit is retried after this (default 30 s)
        "PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS": "2",
        # a task waiting for a source's slot asks again after about this (default 10 s, plus jitter)
        "PREFECT_SERVER_TASKS_TAG_CONCURRENCY_SLOT_WAIT_SECONDS": "2",
    }
    server_log = workdir / "server.log"
    copy_template(workdir / "prefect" / "prefect.db")  # the session's migrated database
    server = start(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        server_env,
        server_log,
    )
    try:
        with demo_sources(
            workdir / "state",
            n_orders=N_ORDERS,
            postgres=postgres_database.server,
            shop_database=postgres_database.name,
        ) as demo:
            wait_healthy(api, server, server_log)
            client_env = prefect | {"PREFECT_API_URL": api}
            deployed = subprocess.run(
                [str(BIN / "elt"), "deploy"],
                env=client_env,
                cwd=PROJECT_DIR,
                capture_output=True,
                text=True,
                check=False,
                timeout=180,
            )
            assert deployed.returncode == 0, deployed.stdout + deployed.stderr
            worker_env = (
                client_env
                | demo.environment()
                | {
                    "ELT_WAREHOUSE": "duckdb",
                    "ELT_DATA_DIR": str(workdir / "data"),
                    "ELT_DUCKDB_PATH": str(workdir / "warehouse.duckdb"),
                    "PREFECT_WORKER_QUERY_SECONDS": "1",
                    "ELT_BUILD_WINDOW_SECONDS": str(BUILD_WINDOW_S),
                }
            )
            worker_log = workdir / "worker.log"
            worker = start(
                [str(BIN / "prefect"), "worker", "start", "--pool", "elt-process"], worker_env, worker_log
            )
            platform = Platform(api, client_env, workdir, worker_log, deployed.stdout, demo)
            try:
                yield platform
            finally:
                stop_unfinished_runs(platform)
                platform.http.close()
                stop_process_group(worker, grace_s=15, kill_wait_s=5)
    finally:
        stop_process_group(server, grace_s=15, kill_wait_s=5)


def flow_runs(platform: Platform, ids: list[str]) -> list[dict[str, Any]]:
    return platform.post("/flow_runs/filter", {"flow_runs": {"id": {"any_": ids}}})


def test_deploy_registers_pool_limits_and_deployments(platform: Platform) -> None:
    # GIVEN a fresh server WHEN `elt deploy` ran THEN every deployment is on the process pool
    deployments = platform.post("/deployments/filter", {})
    flows = {flow["id"]: flow["name"] for flow in platform.post("/flows/filter", {})}
    names = {f"{flows[d['flow_id']]}/{d['name']}": d for d in deployments}
    assert set(names) == DEPLOYMENTS, platform.deploy_output
    assert {d["work_pool_name"] for d in deployments} == {"elt-process"}
    # AND each has its own cron and parameters
    shop = names["ingest-source/ingest-shop"]
    assert shop["parameters"] == {"source": "shop"}
    crons = {name: [s["schedule"]["cron"] for s in d["schedules"]] for name, d in names.items()}
    assert crons.pop("backfill/backfill") == []  # run by hand only
    assert crons.pop("build-on-arrival/build-on-arrival") == []  # started by its trigger
    assert all(len(c) == 1 for c in crons.values()), crons
    assert crons["elt/elt-nightly"] == ["0 3 * * *"]
    assert crons["freshness/freshness"] == ["*/10 * * * *"]
    # AND two runs of one deployment queue one behind the other
    queued = {
        name: (d["global_concurrency_limit"]["limit"], d["concurrency_options"]["collision_strategy"])
        for name, d in names.items()
    }
    assert set(queued.values()) == {(1, "ENQUEUE")}, queued
    # AND the pool takes one run at a time on DuckDB, and each source has a one-slot limit
    assert platform.get("/work_pools/elt-process")["concurrency_limit"] == 1
    for source in SOURCES:
        limit = platform.get(f"/concurrency_limits/tag/{source_tag(source)}")
        assert limit["concurrency_limit"] == 1


def test_elt_deployment_runs_from_the_cli_and_reports(platform: Platform) -> None:
    # GIVEN a worker on the pool WHEN the nightly deployment is triggered from the CLI
    done = subprocess.run(
        [str(BIN / "prefect"), "deployment", "run", "elt/elt-nightly", "--watch", "--watch-timeout", "240"],
        env=platform.env,
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        check=False,
        timeout=270,
    )
    # THEN the run completes
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n--- worker:\n{platform.worker_tail()}"
    run_id = re.search(r"UUID: ([0-9a-f-]{36})", done.stdout).group(1)  # type: ignore[union-attr]
    (run,) = flow_runs(platform, [run_id])
    assert run["state_type"] == "COMPLETED"
    # AND its report is an artifact of that run, visible through the API
    artifacts = platform.post(
        "/artifacts/filter",
        {"artifacts": {"key": {"any_": ["elt-run-report"]}, "flow_run_id": {"any_": [run_id]}}},
    )
    assert len(artifacts) == 1
    assert "succeeded" in artifacts[0]["data"]
    assert "raw_shop.orders" in artifacts[0]["data"]


def test_two_runs_of_one_source_never_overlap(platform: Platform) -> None:
    # GIVEN a pool without a run limit, so only the limits of the deployment and the source
    # keep runs apart, AND the shop's one slot taken, as the full run's load would hold it
    platform.request("PATCH", "/work_pools/elt-process", {"concurrency_limit": None})
    deployment = platform.get("/deployments/name/ingest-source/ingest-shop")
    held = {"names": [f"tag:{source_tag('shop')}"], "slots": 1, "mode": "concurrency", "lease_duration": 180}
    lease = platform.post("/v2/concurrency_limits/increment-with-lease", held)["lease_id"]
    try:
        # WHEN two runs of the shop deployment are created at the same moment
        ids = [platform.post(f"/deployments/{deployment['id']}/create_flow_run", {})["id"] for _ in range(2)]
        # THEN one starts and waits for the source's slot; the other waits for the deployment's
        wait_for(lambda: runs_in(platform, ids, ("RUNNING",)), count=1, timeout=150)
        time.sleep(5)  # time enough to reach the load
        assert len(runs_in(platform, ids, ("RUNNING",))) == 1
        assert ingest_runs(platform, ids, ("RUNNING", "COMPLETED")) == []
    finally:
        released = datetime.now(UTC)
        platform.post("/v2/concurrency_limits/decrement-with-lease", {"lease_id": lease})
    # AND both complete once the slot is free
    wait_for(lambda: runs_in(platform, ids, FINAL), count=2, timeout=300)
    states = [run["state_type"] for run in flow_runs(platform, ids)]
    assert states == ["COMPLETED", "COMPLETED"], f"{states}\n--- worker:\n{platform.worker_tail()}"
    # AND no load began while the slot was taken, and the two ran one after the other
    first, second = sorted(ingest_runs(platform, ids), key=lambda task: task["start_time"])
    assert _time(first["start_time"]) >= released, f"a load ran while the slot was taken: {first}"
    assert _time(first["end_time"]) <= _time(second["start_time"]), f"ingest runs overlap: {first}, {second}"
    runs = sorted(flow_runs(platform, ids), key=lambda run: run["start_time"])
    assert _time(runs[0]["end_time"]) <= _time(runs[1]["start_time"]), "the two flow runs overlap"


def test_sources_landing_together_get_one_build_and_builds_never_overlap(platform: Platform) -> None:
    # GIVEN the nightly run's warehouse (earlier test), one run at a time on the pool as
    # DuckDB needs, and new rows in Stripe and in GitHub
    platform.request("PATCH", "/work_pools/elt-process", {"concurrency_limit": 1})
    add_failed_charges(platform.sources, 2)
    repo = sorted(platform.sources.github.repos)[0]
    platform.sources.github.add_issue(repo, "Landing test")
    # WHEN both per-source deployments run, one right after the other
    landing = [run_deployment(platform, f"ingest-source/ingest-{source}") for source in ("stripe", "github")]
    wait_for(lambda: runs_in(platform, landing, FINAL), count=2, timeout=240)
    # THEN exactly one build follows, covering both, and the run queued behind it has nothing left
    builds = wait_for(lambda: build_runs(platform, FINAL), count=2, timeout=240)
    assert [run["state_type"] for run in builds] == ["COMPLETED"] * 2, platform.worker_tail()
    assert [build_sources(platform, run) for run in builds] == [["stripe", "github"], []]
    built = built_models(platform, builds[0])
    assert {"model.elt.stg_stripe__charges", "model.elt.stg_github__issues"} <= built, built
    assert "model.elt.stg_shop__orders" not in built
    # WHEN Stripe lands again after the window THEN another build covers it alone
    add_failed_charges(platform.sources, 1)
    later = run_deployment(platform, "ingest-source/ingest-stripe")
    wait_for(lambda: runs_in(platform, [later], FINAL), count=1, timeout=240)
    builds = wait_for(lambda: build_runs(platform, FINAL), count=3, timeout=240)
    assert build_sources(platform, builds[2]) == ["stripe"]
    # AND no two builds ever ran at once
    for first, second in itertools.pairwise(builds):
        assert _time(first["end_time"]) <= _time(second["start_time"]), "builds overlap"


def add_failed_charges(sources: DemoSources, count: int) -> None:
    """Failed payment attempts on placed orders: new Stripe rows that no contract minds."""
    with psycopg2.connect(sources.shop_admin_dsn) as conn, conn.cursor() as cur:
        cur.execute("select id from orders where status = 'placed' order by id limit %s", (count,))
        orders = [order for (order,) in cur.fetchall()]
    conn.close()
    rng, now = random.Random(len(sources.stripe.ids("charges"))), int(time.time())
    sources.stripe.extend(
        "charges", [charge_object(rng, order, None, 1000, now, "failed") for order in orders]
    )


def run_deployment(platform: Platform, name: str) -> str:
    deployment = platform.get(f"/deployments/name/{name}")
    return platform.post(f"/deployments/{deployment['id']}/create_flow_run", {})["id"]


def build_runs(platform: Platform, states: tuple[str, ...]) -> list[dict[str, Any]]:
    """The build-on-arrival runs in one of ``states``, oldest first."""
    deployment = platform.get("/deployments/name/build-on-arrival/build-on-arrival")
    runs = platform.post("/flow_runs/filter", {"flow_runs": {"deployment_id": {"any_": [deployment["id"]]}}})
    return sorted(
        (run for run in runs if run["state_type"] in states), key=lambda run: run["expected_start_time"]
    )


def build_sources(platform: Platform, run: dict[str, Any]) -> list[str]:
    """The sources a build-on-arrival run covered, from its report (none: no report)."""
    query = {
        "artifacts": {"key": {"any_": ["build-on-arrival-report"]}, "flow_run_id": {"any_": [run["id"]]}}
    }
    reports = platform.post("/artifacts/filter", query)
    if not reports:
        return []
    first_line = reports[0]["data"].splitlines()[0]
    return first_line.removeprefix("Sources that landed: ").split(", ")


def built_models(platform: Platform, run: dict[str, Any]) -> set[str]:
    """The models a build ran, as it recorded them in the warehouse (``elt_audit.dbt_nodes``,
    keyed by its flow run id); per-node task runs are off here, they cost the server most."""
    with duckdb.connect(str(platform.workdir / "warehouse.duckdb"), read_only=True) as con:
        rows = con.execute(
            "select unique_id from elt_audit.dbt_nodes where run_id = ? and status = 'success'"
            " and starts_with(unique_id, 'model.')",
            [run["id"]],
        ).fetchall()
    return {unique_id for (unique_id,) in rows}


FINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


def runs_in(platform: Platform, ids: list[str], states: tuple[str, ...]) -> list[dict[str, Any]]:
    return [run for run in flow_runs(platform, ids) if run["state_type"] in states]


def ingest_runs(
    platform: Platform, flow_run_ids: list[str], states: tuple[str, ...] | None = None
) -> list[dict[str, Any]]:
    """The ``ingest-shop`` task runs of these flow runs (in one of ``states``, if given)."""
    tasks = platform.post(
        "/task_runs/filter",
        {"flow_runs": {"id": {"any_": flow_run_ids}}, "task_runs": {"name": {"any_": ["ingest-shop"]}}},
    )
    return [task for task in tasks if states is None or task["state_type"] in states]


def wait_for(read: Callable[[], list[Any]], count: int, timeout: float) -> list[Any]:
    """Poll until ``read`` returns ``count`` items."""
    deadline = time.monotonic() + timeout
    while len(items := read()) < count:
        assert time.monotonic() < deadline, f"only {len(items)} of {count} after {timeout}s: {items}"
        time.sleep(1)
    return items


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
