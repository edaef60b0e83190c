"""The build lock against a real Prefect API: a live holder keeps it, a dead one cannot.

Each holder is a process of its own that takes ``flows.build_lock.build_lock`` and says so;
the test kills it with SIGKILL (as the reliability campaign does to a build mid-dbt) or
lets it finish. The test harness's server runs no repossessor, the case that kept a killed
build's slot for ever before the heartbeat.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from flows.build_lock import BUILD_LOCK, RESET_COMMAND, BuildLockTimeout, LockTiming, build_lock
from flows.config import PROJECT_DIR, TELEMETRY_OFF

STALE_S = 2.0
HOLDER = textwrap.dedent(
    """
    import sys, time
    from flows.build_lock import LockTiming, build_lock
    with build_lock(LockTiming(stale={stale}, timeout=60)):
        print("held", flush=True)
        time.sleep(float(sys.argv[1]))
    print("released", flush=True)
    """
).format(stale=STALE_S)

pytestmark = pytest.mark.usefixtures("prefect_harness")


@contextmanager
def holder(seconds: float) -> Iterator[subprocess.Popen[str]]:
    """A process holding the build lock for ``seconds``, once it printed ``held``."""
    from prefect.settings import PREFECT_API_URL

    env = os.environ | TELEMETRY_OFF | {"PREFECT_API_URL": str(PREFECT_API_URL.value())}
    command = [sys.executable, "-c", HOLDER, str(seconds)]
    process = subprocess.Popen(command, cwd=PROJECT_DIR, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "held", "the holder never took the lock"
        yield process
    finally:
        process.kill()
        process.wait()


def active_slots() -> int:
    from prefect import get_client

    with get_client(sync_client=True) as client:
        return client.read_global_concurrency_limit_by_name(BUILD_LOCK).active_slots


def test_a_killed_holder_loses_the_lock_and_a_live_one_keeps_it(caplog: pytest.LogCaptureFixture) -> None:
    # GIVEN a build holding the lock, killed with SIGKILL: nothing released its slot
    with holder(600) as dead:
        dead.send_signal(signal.SIGKILL)
        dead.wait()
    assert active_slots() == 1
    # WHEN the next build asks for the lock THEN it frees the dead holder's slot once the
    # heartbeat stood still for the stale time, and holds the lock itself
    started = time.monotonic()
    with build_lock(LockTiming(stale=STALE_S, timeout=60)):
        waited = time.monotonic() - started
        assert active_slots() == 1
    assert STALE_S <= waited < 10 * STALE_S, waited
    assert "Freed elt-build from a holder that stopped beating" in caplog.text
    assert active_slots() == 0

    # GIVEN a live holder that beats WHEN another build waits past its limit THEN it does
    # not take the lock but fails, naming the holder and how to free a lock for good
    with holder(4 * STALE_S) as live:
        with pytest.raises(BuildLockTimeout) as waited_out, build_lock(LockTiming(STALE_S, 3 * STALE_S)):
            pytest.fail("took the lock of a live holder")
        message = str(waited_out.value)
        assert f"pid {live.pid}" in message and RESET_COMMAND in message
        # AND a build that waits long enough gets the lock once the holder releases it
        with build_lock(LockTiming(stale=STALE_S, timeout=60)):
            assert live.wait(5) == 0
    assert active_slots() == 0
