"""The light crash campaign (tests/reliability), started when collection ends and run beside
the rest of the suite.

It is a process of its own for about five minutes, most of them spent waiting on its child
runs (well under one core), so started first it finishes before its test is reached and
the test only reads the verdict. It has its own PostgreSQL, stand-ins, Prefect server and
warehouse, so nothing it does touches another test. Only a session that selected its test
starts it: the pytest process itself, or with ``-n`` xdist's controller; it writes in the
session's shared folder (tests/support/workers.py), where the worker that runs the test
waits for the files.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from flows.config import PROJECT_DIR
from tests.support.processes import stop_process_group
from tests.support.workers import is_worker, shared_folder

CAMPAIGN_TEST = "tests/integration/test_reliability.py::"
TIMEOUT_S = 1800
STDOUT, STDERR, RETURNCODE = "stdout.txt", "stderr.txt", "returncode"


@dataclass(frozen=True)
class Verdict:
    returncode: int
    stdout: str
    stderr: str


class Campaign:
    """The campaign's process and its folder: ``stdout.txt``, ``stderr.txt`` and, once it
    ended, ``returncode``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.folder.mkdir(parents=True)
        work = self.folder / "work"
        command = shlex.join([sys.executable, "-m", "tests.reliability", "--light", "--workdir", str(work)])
        out, err, status = (shlex.quote(str(self.folder / name)) for name in (STDOUT, STDERR, RETURNCODE))
        # the shell records the exit status for whichever process reads the verdict
        self.process = subprocess.Popen(
            ["sh", "-c", f"{command} >{out} 2>{err}; echo $? >{status}"],
            cwd=PROJECT_DIR,
            start_new_session=True,
        )

    def verdict(self, timeout: float = TIMEOUT_S) -> Verdict:
        deadline = time.monotonic() + timeout
        returncode = self.folder / RETURNCODE
        while not returncode.exists() or not returncode.read_text().strip():
            if time.monotonic() > deadline:
                progress = self._read(STDERR)[-4000:]
                pytest.fail(f"the light campaign did not finish in {timeout:.0f} s:\n{progress}")
            time.sleep(1)
        return Verdict(int(returncode.read_text()), self._read(STDOUT), self._read(STDERR))

    def stop(self) -> None:
        """SIGTERM unwinds the campaign (its servers stop); whatever is left is killed. Its
        folder goes with the session's shared folder (tests/support/workers.py)."""
        if self.process is not None:
            stop_process_group(self.process, grace_s=60)

    def _read(self, name: str) -> str:
        path = self.folder / name
        return path.read_text(errors="replace") if path.exists() else ""


_CAMPAIGN = pytest.StashKey[Campaign]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_CAMPAIGN] = Campaign(shared_folder(config) / "light-campaign")


def _start_if_selected(config: pytest.Config, node_ids: list[str]) -> None:
    campaign = config.stash[_CAMPAIGN]
    if (
        campaign.process is None
        and not config.option.collectonly
        and any(node_id.startswith(CAMPAIGN_TEST) for node_id in node_ids)
    ):
        campaign.start()


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node: Any, ids: list[str]) -> None:
    _start_if_selected(node.config, ids)


def pytest_collection_finish(session: pytest.Session) -> None:
    if not is_worker(session.config):
        _start_if_selected(session.config, [item.nodeid for item in session.items])


def pytest_unconfigure(config: pytest.Config) -> None:
    if not is_worker(config):
        config.stash[_CAMPAIGN].stop()


@pytest.fixture(scope="session")
def light_campaign(pytestconfig: pytest.Config) -> Verdict:
    """The campaign's exit status and output, waiting for it if it is still running."""
    campaign = pytestconfig.stash[_CAMPAIGN]
    if not is_worker(pytestconfig) and campaign.process is None:  # selected after collection
        campaign.start()
    return campaign.verdict()
