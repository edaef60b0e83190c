"""Stopping a server or a run the tests started in a process group of its own."""

from __future__ import annotations

import os
import signal
import subprocess
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
