"""Prefect's database schema migrated once per session instead of once per server.

Why: a Prefect server on a fresh SQLite file first runs its Alembic migrations, ~12 s of
CPU on the 2-core machine (``prefect server database upgrade``: 17 s on a fresh file, 5 s on
a migrated one, mostly imports), and ``make test`` starts four servers (one per worker, the
light crash campaign's, test_deployments'). The first server to start migrates a template
in the session's shared folder, under a lock; every server starts from a copy of it.
A session that starts no server migrates nothing.

A pytest plugin (registered in ``tests/conftest.py``).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from unittest import mock

import pytest

from flows.config import TELEMETRY_OFF
from tests.support.workers import shared_folder

# where the template goes, for this process and the processes it starts (the campaign)
TEMPLATE_SETTING = "ELT_TESTS_PREFECT_DATABASE"


def pytest_configure(config: pytest.Config) -> None:
    os.environ[TEMPLATE_SETTING] = str(shared_folder(config) / "prefect-template" / "prefect.db")


def _template() -> Path | None:
    """The migrated template, made now if no process made it yet; None outside pytest or
    when the migration failed (the server then migrates its own file, as without this)."""
    setting = os.environ.get(TEMPLATE_SETTING)
    if not setting:
        return None
    template = Path(setting)
    template.parent.mkdir(parents=True, exist_ok=True)
    with (template.parent / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second process waits here, then copies
        if not template.exists():
            partial = template.with_name("partial.db")
            partial.unlink(missing_ok=True)
            environment = (
                os.environ
                | TELEMETRY_OFF
                | {
                    "PREFECT_HOME": str(template.parent / "home"),
                    "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{partial}",
                }
            )
            upgrade = [sys.executable, "-m", "prefect", "server", "database", "upgrade", "-y"]
            migrated = subprocess.run(upgrade, env=environment, capture_output=True, timeout=300, check=False)
            if migrated.returncode:
                return None
            partial.replace(template)
    return template


def copy_template(destination: Path) -> None:
    """Put the session's migrated database at ``destination`` (where there is one)."""
    template = _template()
    if template is not None:
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(template, destination)


# Services no test of the harness's server relies on, off: every event (a dbt node's start
# and finish are events) was written to the events table and offered to the triggers,
# for nobody to read. The task-run recorder stays (tests read the nodes' task runs), and
# tests/integration/test_deployments.py, whose automations need the triggers, starts a
# server of its own with every service on.
UNUSED_SERVICES_OFF = {
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED": "false",
}


@contextmanager
def prefect_test_server() -> Iterator[None]:
    """Prefect's own ``prefect_test_harness``, its database a copy of the template.

    The harness puts its database at ``<mkdtemp()>/prefect-test.db``; giving it a folder
    that already holds a migrated file is all it takes (if Prefect ever names the file
    otherwise, the server just migrates a fresh one).
    """
    from prefect.testing import utilities

    folder = tempfile.mkdtemp(prefix="prefect-test-server-")
    copy_template(Path(folder) / "prefect-test.db")
    with ExitStack() as stack:
        with (
            mock.patch.object(utilities, "mkdtemp", return_value=folder),
            mock.patch.dict(os.environ, UNUSED_SERVICES_OFF),
        ):
            stack.enter_context(utilities.prefect_test_harness(server_startup_timeout=180))
        yield
