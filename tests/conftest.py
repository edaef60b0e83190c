"""Test-wide isolation: every tool's state goes to a temporary folder, telemetry is off,
and one Prefect test server and one PostgreSQL server serve the whole session (each costs
seconds to start). Shared helpers and fixtures live in ``tests/support/``."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# Before anything imports flows.config, dlt, Prefect or Soda: keep them off the
# network and out of the repository's data/ folder.
_SESSION_DIR = Path(tempfile.mkdtemp(prefix="elt-tests-"))
os.environ["ELT_DATA_DIR"] = str(_SESSION_DIR / "data")
# dbt's nodes as Prefect task runs: only tests/integration/test_dbt_project.py reads them,
# and recording every node of every build was most of the Prefect servers' CPU
os.environ["ELT_DBT_NODE_TASK_RUNS"] = "false"
# lineage events: only the e2e flow (tests/e2e/test_elt_flow.py, file and HTTP) reads them;
# every other run still works out and stores its column lineage, without building events
os.environ["ELT_LINEAGE_TRANSPORT"] = "none"
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")

from flows.config import apply_runtime_environment  # noqa: E402

apply_runtime_environment()

# The helpers' asserts explain their failures as a test's own do.
pytest.register_assert_rewrite("tests.support")
pytest_plugins = [
    "tests.support.workers",
    "tests.support.prefect_database",
    "tests.support.postgres",
    "tests.support.first_runs",
    "tests.support.light_campaign",
]


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """A real, temporary Prefect API (SQLite) shared by every test that runs flows."""
    from tests.support.prefect_database import prefect_test_server

    with prefect_test_server():
        yield


@pytest.fixture(scope="session")
def session_dir() -> Path:
    return _SESSION_DIR


@pytest.fixture(scope="module")
def module_dir(session_dir: Path, request: pytest.FixtureRequest) -> Path:
    """A folder for one test module's servers and files, under the session's own folder:
    pytest prunes its numbered tmp folders when other sessions start, under live servers."""
    name = request.module.__name__.rsplit(".", 1)[-1]
    return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=session_dir))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    from tests.support.scheduling import check_first_run_modules  # after register_assert_rewrite above

    check_first_run_modules(items)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """``make test`` runs two workers (``-n 2``): whole modules each (tests/support/scheduling.py)."""
    from tests.support.scheduling import ModuleScheduling

    return ModuleScheduling(config, log)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_SESSION_DIR, ignore_errors=True)
