"""The light crash campaign (tests/reliability), started when collection ends and run beside
the rest of the suite.

It is a process of its own for about five minutes, most of them spent waiting on its child
runs (well under one core of two), so started first it finishes before its test is reached
and the test only reads the verdict: five minutes of the ten-minute budget given back. It
has its own PostgreSQL, stand-ins, Prefect server and warehouse, so nothing it does touches
another test. Only a session that selected its test starts it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from flows.config import PROJECT_DIR

CAMPAIGN_MODULE = "tests/integration/test_reliability.py"
TIMEOUT_S = 1800


@dataclass
class Campaign:
    process: subprocess.Popen[bytes]
    workdir: Path

    @property
    def stdout(self) -> Path:
        return self.workdir / "stdout.txt"

    @property
    def stderr(self) -> Path:
        return self.workdir / "stderr.txt"

    @classmethod
    def start(cls) -> Campaign:
        workdir = Path(tempfile.mkdtemp(prefix="elt-light-campaign-"))
        command = ["-m", "tests.reliability", "--light", "--workdir", str(workdir / "campaign")]
        with (workdir / "stdout.txt").open("wb") as out, (workdir / "stderr.txt").open("wb") as err:
            process = subprocess.Popen(
                [sys.executable, *command],
                cwd=PROJECT_DIR,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        return cls(process, workdir)

    def stop(self) -> None:
        """SIGTERM unwinds the campaign (its servers stop); whatever is left is killed."""
        for sig, grace in ((signal.SIGTERM, 60), (signal.SIGKILL, 10)):
            if self.process.poll() is not None:
                break
            try:
                os.killpg(self.process.pid, sig)
                self.process.wait(grace)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                continue
        shutil.rmtree(self.workdir, ignore_errors=True)


@dataclass(frozen=True)
class Verdict:
    returncode: int
    stdout: str
    stderr: str


_STARTED = pytest.StashKey[Campaign]()


def pytest_collection_finish(session: pytest.Session) -> None:
    if session.config.option.collectonly:
        return
    if any(item.nodeid.startswith(CAMPAIGN_MODULE) for item in session.items):
        session.config.stash[_STARTED] = Campaign.start()


def pytest_sessionfinish(session: pytest.Session) -> None:
    if (campaign := session.config.stash.get(_STARTED, None)) is not None:
        campaign.stop()


@pytest.fixture(scope="session")
def light_campaign(pytestconfig: pytest.Config) -> Verdict:
    """The campaign's exit status and output, waiting for it if it is still running."""
    campaign = pytestconfig.stash.get(_STARTED, None)
    if campaign is None:  # selected in a way collection did not see (e.g. by keyword at run time)
        campaign = pytestconfig.stash[_STARTED] = Campaign.start()
    try:
        campaign.process.wait(TIMEOUT_S)
    except subprocess.TimeoutExpired:
        progress = campaign.stderr.read_text(errors="replace")[-4000:]
        pytest.fail(f"the light campaign did not finish in {TIMEOUT_S} s:\n{progress}")
    return Verdict(
        campaign.process.returncode,
        campaign.stdout.read_text(errors="replace"),
        campaign.stderr.read_text(errors="replace"),
    )
