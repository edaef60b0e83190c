"""Faults the campaign injects besides the HTTP ones the stand-ins serve themselves.

- the DuckDB file locked by another process for a while (a second writer);
- a temporary directory with no free space (a tmpfs filled to the brim, where dlt keeps
  its working folders and every tool its temporary files);
- PostgreSQL restarted under a run (``standins.postgres.restart``).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HOLD_LOCK = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
"""


def hold_duckdb_lock(path: Path, seconds: float) -> subprocess.Popen[str]:
    """Another process opens the warehouse file for writing and keeps it ``seconds``."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(path), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None
    if holder.stdout.readline().strip() != "locked":
        holder.kill()
        raise RuntimeError(f"could not lock {path} from another process")
    return holder


def can_mount_tmpfs() -> str | None:
    """None when a tmpfs can be mounted here, else why not (the fault is then skipped)."""
    if os.geteuid() != 0:
        return "mounting a full tmpfs needs root"
    probe = Path(f"/tmp/reliability-probe-{os.getpid()}")
    probe.mkdir(exist_ok=True)
    try:
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)],
            check=False,
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            return f"mount -t tmpfs failed: {result.stderr.strip()}"
        subprocess.run(["umount", str(probe)], check=True)
        return None
    finally:
        probe.rmdir()


@contextmanager
def full_directory(path: Path, size_kb: int = 1024) -> Iterator[Path]:
    """A tmpfs at ``path`` with every byte taken: any write there fails with ENOSPC."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(path)], check=True)
    try:
        with (path / "filler").open("wb", buffering=0) as filler, contextlib.suppress(OSError):
            while True:
                filler.write(b"\0" * 4096)
        yield path
    finally:
        for attempt in range(10):
            if subprocess.run(["umount", str(path)], check=False, capture_output=True).returncode == 0:
                break
            time.sleep(0.5 * (attempt + 1))
