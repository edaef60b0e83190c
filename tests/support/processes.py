"""Starting and stopping a server or a run the tests start in a process group of its own."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any


def stop_process_group(process: subprocess.Popen[Any], grace_s: float, kill_wait_s: float = 10) -> None:
    """SIGTERM the group (so what the process started stops too), SIGKILL it after
    ``grace_s`` if anything lingers; returns when the process is gone."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, kill_wait_s)):
        if process.poll() is not None:
            return
        try:
            os.killpg(process.pid, sig)
            process.wait(wait_s)
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def start_process_group(
    command: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """``command`` in a process group of its own (so ``stop_process_group`` also stops what
    it starts), its stdout and stderr in ``log``."""
    with log.open("wb") as out:
        return subprocess.Popen(
            command, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
