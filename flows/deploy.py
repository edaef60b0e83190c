"""Register the platform's deployments with a running Prefect API (``elt deploy``).

Why more than ``prefect deploy --all``: the deployments only behave when the
``elt-process`` work pool exists (with the process worker's job template, so the
deployments' job variables reach the runs) and when every source's tag has its one-slot
task concurrency limit (``flows.ingest.source_tag``); without it, overlapping runs of a
source would load it twice at once. On DuckDB the pool also runs one flow at a time
(``default_pool_limit``). Each step is idempotent: run it after every change to
``deployments/prefect.yaml``. Before any of it, the file's per-source deployments are
checked against the source registry (``dlt_sources/registry.py``, which holds each
source's schedule), so a source is never left unscheduled, or scheduled twice, by mistake.

It talks only to the API in ``PREFECT_API_URL`` and never starts a server: a missing or
unreachable API is one line saying what to do, within seconds.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import yaml

from flows.config import PROJECT_DIR, TELEMETRY_OFF
from flows.warehouses import DEFAULT_WAREHOUSE, warehouse_named

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient

    from dlt_sources.spec import SourceSpec

WORK_POOL = "elt-process"
PREFECT_FILE = PROJECT_DIR / "deployments" / "prefect.yaml"
SOURCE_ENTRYPOINT = "flows/ingest_source.py:ingest_source"
HEALTH_TIMEOUT_S = 5.0
# `prefect deploy` imports every flow (dbt, Soda, dlt): ~5 s, several times that on a busy machine.
REGISTER_TIMEOUT_S = 600.0


class DeployError(Exception):
    """The deployments could not be registered; the message says what to do."""


def check_api(url: str | None = None) -> str:
    """The API URL from ``PREFECT_API_URL``, once ``/health`` answered; DeployError otherwise."""
    url = (url if url is not None else os.environ.get("PREFECT_API_URL", "")).strip().rstrip("/")
    if not url:
        raise DeployError(
            "PREFECT_API_URL is not set: start a server (`prefect server start`) and "
            "`export PREFECT_API_URL=http://127.0.0.1:4200/api`"
        )
    try:
        httpx.get(f"{url}/health", timeout=HEALTH_TIMEOUT_S).raise_for_status()
    except (httpx.HTTPError, ValueError) as exc:
        raise DeployError(
            f"the Prefect API at PREFECT_API_URL={url} does not answer ({type(exc).__name__}); "
            "start it with `prefect server start` or fix PREFECT_API_URL"
        ) from None
    return url


def ensure_work_pool(
    client: SyncPrefectClient, name: str = WORK_POOL, concurrency_limit: int | None = None
) -> bool:
    """Create the process work pool if missing; set its run limit (None: unlimited). True if created."""
    from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
    from prefect.exceptions import ObjectNotFound
    from prefect.workers.process import ProcessWorker

    try:
        client.read_work_pool(name)
        created = False
    except ObjectNotFound:
        client.create_work_pool(
            WorkPoolCreate(
                name=name,
                type=ProcessWorker.type,
                base_job_template=ProcessWorker.get_default_base_job_template(),
            )
        )
        created = True
    client.update_work_pool(name, WorkPoolUpdate(concurrency_limit=concurrency_limit))
    return created


def ensure_source_limits(client: SyncPrefectClient, sources: Iterable[str]) -> list[str]:
    """A one-slot tag concurrency limit per source: two tasks touching a source never run at once.

    Creating an existing limit sets it back to one slot (the API upserts).
    """
    from flows.ingest import source_tag

    tags = [source_tag(source) for source in sources]
    for tag in tags:
        client.create_concurrency_limit(tag=tag, concurrency_limit=1)
    return tags


def source_deployment(spec: SourceSpec) -> dict[str, Any]:
    """The fields of a scheduled source's deployment that must agree with its registry record."""
    from flows.ingest import source_tag

    return {
        "name": f"ingest-{spec.name.replace('_', '-')}",
        "entrypoint": SOURCE_ENTRYPOINT,
        "parameters": {"source": spec.name},
        "tags": ["ingest", source_tag(spec.name)],
        "schedules": [{"cron": spec.schedule, "timezone": "UTC"}],
    }


def deployment_drift(prefect_file: Path = PREFECT_FILE) -> list[str]:
    """Where the per-source deployments in ``prefect_file`` disagree with the registry, one line each.

    Every source with a schedule needs its deployment on that cron; a source without one loads
    only in the nightly run; a deployment of a source the registry does not know is a leftover.
    """
    from dlt_sources.registry import SOURCES

    inside = prefect_file.is_relative_to(PROJECT_DIR)
    where = prefect_file.relative_to(PROJECT_DIR) if inside else prefect_file
    document = yaml.safe_load(prefect_file.read_text()) or {}
    deployed = {
        (entry.get("parameters") or {}).get("source"): entry
        for entry in document.get("deployments") or []
        if entry.get("entrypoint") == SOURCE_ENTRYPOINT
    }
    problems = []
    for name, spec in SOURCES.items():
        entry = deployed.pop(name, None)
        if spec.schedule is None:
            if entry is not None:
                problems.append(
                    f"{where}: deployment {entry.get('name')} runs source {name}, which has no schedule "
                    "in its registry record; remove the deployment or give the source a schedule"
                )
            continue
        expected = source_deployment(spec)
        if entry is None:
            problems.append(
                f"{where}: source {name} has a schedule but no deployment; add "
                + yaml.safe_dump(expected, default_flow_style=True, sort_keys=False, width=1_000).strip()
            )
            continue
        differs = [
            f"{key} is {entry.get(key)!r}, the registry says {value!r}"
            for key, value in expected.items()
            if entry.get(key) != value
        ]
        if differs:
            problems.append(f"{where}: deployment {entry.get('name')} of source {name}: {'; '.join(differs)}")
    problems += [
        f"{where}: deployment {entry.get('name')} runs source {name!r}, unknown to dlt_sources/registry.py"
        for name, entry in deployed.items()
    ]
    return problems


def register_deployments(api_url: str, prefect_file: Path = PREFECT_FILE) -> str:
    """Run ``prefect deploy --all`` from the repository root; its output, or DeployError."""
    # COLUMNS: one line per deployment in Prefect's output, which names them
    env = os.environ | TELEMETRY_OFF | {"PREFECT_API_URL": api_url, "COLUMNS": "400"}
    # the pull step of every run changes into this clone (deployments/prefect.yaml)
    env.setdefault("ELT_PROJECT_DIR", str(PROJECT_DIR))
    command = [_prefect_executable(), "--no-prompt", "deploy", "--all", "--prefect-file", str(prefect_file)]
    try:
        done = subprocess.run(
            command,
            cwd=PROJECT_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=REGISTER_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise DeployError(f"`prefect deploy` did not finish within {REGISTER_TIMEOUT_S:.0f}s") from None
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).strip().splitlines()[-5:]
        raise DeployError("`prefect deploy --all` failed: " + " | ".join(line.strip() for line in tail))
    return done.stdout


def default_pool_limit() -> int | None:
    """1 on a warehouse that takes one writer at a time (DuckDB's file); no limit on the others.

    Read from ``ELT_WAREHOUSE`` where ``elt deploy`` runs, which is the worker's on one machine.
    """
    warehouse = warehouse_named(os.environ.get("ELT_WAREHOUSE") or DEFAULT_WAREHOUSE)
    return None if warehouse.takes_concurrent_writers else 1


def deploy(pool_limit: int | None) -> list[str]:
    """Check the API, create the work pool and source limits, register every deployment.

    Returns lines for the person running it.
    """
    from prefect.client.orchestration import get_client

    from dlt_sources.registry import SOURCES
    from flows.build_lock import BUILD_LOCK, ensure_build_lock

    url = check_api()
    drift = deployment_drift()
    if drift:
        raise DeployError("deployments/prefect.yaml disagrees with the source registry: " + " | ".join(drift))
    with get_client(sync_client=True) as client:
        created = ensure_work_pool(client, WORK_POOL, pool_limit)
        limits = ensure_source_limits(client, SOURCES)
    ensure_build_lock()
    output = register_deployments(url)
    names = re.findall(r"Deployment '([^']+)' successfully", output)
    pool_runs = "no limit" if pool_limit is None else f"at most {pool_limit} run(s) at once"
    listed = ", ".join(names) or "see `prefect deployment ls`"
    return [
        f"work pool {WORK_POOL}: {'created' if created else 'exists'} ({pool_runs})",
        f"task concurrency limits (1 slot each): {', '.join(limits)}",
        f"build lock: global concurrency limit {BUILD_LOCK} (1 slot)",
        f"registered {len(names)} deployment(s) with {url}: {listed}",
        f"start a worker: prefect worker start --pool {WORK_POOL}",
    ]


def _prefect_executable() -> str:
    """The ``prefect`` next to this interpreter (the project's venv), else the one on PATH."""
    beside = Path(sys.executable).with_name("prefect")
    if beside.exists():
        return str(beside)
    found = shutil.which("prefect")
    if found is None:
        raise DeployError("the `prefect` command is not installed; run `make install`")
    return found
