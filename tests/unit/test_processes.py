"""stop_process_group: SIGTERM first, SIGKILL for what ignores it, the whole group either way."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from tests.support.processes import stop_process_group


def live_members(pgid: int) -> list[int]:
    """The group's processes that are neither gone nor zombies (an orphan waits for init to reap it)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if fields and int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def test_a_group_that_ignores_sigterm_is_killed_after_the_grace() -> None:
    # the shell ignores SIGTERM and so does its child (an ignored signal stays ignored across exec)
    process = subprocess.Popen(["sh", "-c", "trap '' TERM; sleep 60 & wait"], start_new_session=True)
    time.sleep(0.3)
    started = time.monotonic()
    stop_process_group(process, grace_s=0.5)
    assert process.returncode == -9
    assert time.monotonic() - started < 5
    time.sleep(0.1)
    assert live_members(process.pid) == []  # the background sleep went with it


def test_a_group_that_obeys_sigterm_stops_at_once() -> None:
    process = subprocess.Popen(["sleep", "60"], start_new_session=True)
    stop_process_group(process, grace_s=30)
    assert process.returncode == -15


def test_a_process_already_gone_is_left_alone() -> None:
    process = subprocess.Popen(["true"], start_new_session=True)
    process.wait()
    stop_process_group(process, grace_s=1)
    assert process.returncode == 0
