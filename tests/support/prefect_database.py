"""Prefect's database schema migrated once per session instead of once per server.

Why: a Prefect server on a fresh SQLite file first runs its Alembic migrations, ~12 s of
CPU on the 2-core machine (``prefect server database upgrade``: 17 s on a fresh file, 5 s on
a migrated one, both mostly imports otherwise), and ``make test`` starts four servers (one
per worker, the light crash campaign's, test_deployments'). The pytest process (or xdist's
controller) migrates a template file in the background as the session starts; a server
starts from a copy of it, or, if there is none, migrates its own file as before.

A pytest plugin (registered in ``tests/conftest.py``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from unittest import mock

import pytest

from flows.config import TELEMETRY_OFF
from tests.support.workers import is_worker, shared_folder

# where the template is, for this process and every process it starts (the campaign)
TEMPLATE_SETTING = "ELT_TESTS_PREFECT_DATABASE"
_DONE = ".done"
WAIT_S = 300


def pytest_configure(config: pytest.Config) -> None:
    if is_worker(config) or config.option.collectonly:
        return
    folder = shared_folder(config) / "prefect-template"
    folder.mkdir()
    template = folder / "prefect.db"
    environment = (
        os.environ
        | TELEMETRY_OFF
        | {
            "PREFECT_HOME": str(folder / "home"),
            "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{template}",
        }
    )
    upgrade = [sys.executable, "-m", "prefect", "server", "database", "upgrade", "-y"]
    # the exit status lands in .done, so a reader knows both that it ended and how
    record_status = '"$@" >/dev/null 2>&1; echo $? > "$0.tmp" && mv "$0.tmp" "$0"'
    subprocess.Popen(
        ["sh", "-c", record_status, str(folder / _DONE), *upgrade], env=environment, start_new_session=True
    )
    os.environ[TEMPLATE_SETTING] = str(template)


def copy_template(destination: Path) -> bool:
    """Put the session's migrated database at ``destination``; False when there is none
    (outside pytest, or its migration failed): the server then migrates its own."""
    template = os.environ.get(TEMPLATE_SETTING)
    if not template:
        return False
    done = Path(template).with_name(_DONE)
    deadline = time.monotonic() + WAIT_S
    while not done.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    if not done.exists() or done.read_text().strip() != "0":
        return False
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, destination)
    return True


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
        with mock.patch.object(utilities, "mkdtemp", return_value=folder):
            stack.enter_context(utilities.prefect_test_harness(server_startup_timeout=180))
        yield
