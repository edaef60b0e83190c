"""Snowflake for the tests, without the cloud: fakesnow's HTTP server on 127.0.0.1.

Why a subprocess: dlt, dbt and Soda connect with the real snowflake-connector-python
over HTTP, exactly as in production, and the emulator's patches (``shims.py``, the one
place that knows its gaps) must not leak into the test process. The server keeps its
temporary files (stage uploads) under the caller's folder and is stopped on exit.

Usage::

    with running_fakesnow(tmp_path) as snowflake:
        os.environ.update(snowflake.environment())
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode

from tests.emulators.snowflake.shims import CLIENT_SETTINGS, LOGIN_TIMEOUT_S, NETWORK_TIMEOUT_S

PROJECT_DIR = Path(__file__).resolve().parents[3]
READY_PREFIX = "fakesnow listening on port "
STARTUP_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class FakeSnowflake:
    """Where the emulator listens and which login it accepts."""

    host: str
    port: int
    user: str
    password: str
    account: str = "fakesnow"
    database: str = "ELT"
    warehouse: str = "ELT_WH"
    role: str = "ELT_ROLE"
    log_file: Path | None = None

    def credentials_url(self, password: str | None = None, **options: str) -> str:
        """dlt's connection string; login and network timeouts stop the connector's retry loops.

        ``password=""`` leaves the password out (key-pair login: pass ``private_key_path=…``).
        """
        secret = quote(self.password if password is None else password, safe="")
        login = f"{quote(self.user, safe='')}:{secret}" if secret else quote(self.user, safe="")
        query = {
            "host": self.host,
            "port": str(self.port),
            "protocol": "http",
            "warehouse": self.warehouse,
            "role": self.role,
            "login_timeout": str(LOGIN_TIMEOUT_S),
            "network_timeout": str(NETWORK_TIMEOUT_S),
        } | options
        return f"snowflake://{login}@{self.account}/{self.database}?{urlencode(query)}"

    def environment(self) -> dict[str, str]:
        """Every setting the flow reads to use this emulator: credentials plus the client shims."""
        return {
            "ELT_WAREHOUSE": "snowflake",
            "DESTINATION__SNOWFLAKE__CREDENTIALS": self.credentials_url(),
            **CLIENT_SETTINGS,
        }

    def server_log(self) -> str:
        """The emulator's log (each rejected statement is there), for failure messages."""
        if self.log_file is None or not self.log_file.exists():
            return ""
        return self.log_file.read_text(errors="replace")

    def first_errors(self, count: int = 3) -> str:
        """The first statements the emulator failed, with their errors: usually the cause, while
        later ones are often consequences (an aborted transaction fails all that follow).
        dlt's probes for tables that don't exist yet are left out."""
        blocks: list[list[str]] = []
        for line in self.server_log().splitlines():
            if "sql_text=" in line:
                blocks.append([line])
            elif blocks and ("Error" in line or "Exception" in line):
                blocks[-1].append(line)
        failures = [block for block in blocks if not any("does not exist" in line for line in block)]
        return "\n".join("\n".join(block) for block in failures[:count])


@contextmanager
def running_fakesnow(
    workdir: Path,
    user: str = "elt_loader",
    password: str = "emulator-password",
    public_key_file: Path | None = None,
) -> Iterator[FakeSnowflake]:
    """Start the patched emulator in a subprocess; stop it (and only it) when the block ends.

    ``public_key_file`` (PEM) lets the user also log in with the matching private key (JWT).
    """
    workdir = Path(workdir)
    tmp = workdir / "fakesnow-tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    log_file = workdir / "fakesnow.log"
    command = [sys.executable, "-m", "tests.emulators.snowflake", "--user", user]
    if public_key_file is not None:
        command += ["--public-key-file", str(public_key_file)]
    env = os.environ | {
        "TMPDIR": str(tmp),  # fakesnow's stage bucket is a mkdtemp() at import time
        "FAKESNOW_EXPECTED_PASSWORD": password,  # not on the command line, where ps would show it
        "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_DIR), os.environ.get("PYTHONPATH")])),
    }
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=PROJECT_DIR, env=env, stdout=subprocess.PIPE, stderr=log, text=True
        )
        try:
            port = _wait_until_ready(process, log_file)
            yield FakeSnowflake(host="127.0.0.1", port=port, user=user, password=password, log_file=log_file)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def _wait_until_ready(process: subprocess.Popen[str], log_file: Path) -> int:
    """Read the port the server printed; fail with its log if it died or took too long."""
    assert process.stdout is not None
    stdout = process.stdout
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in stdout], daemon=True).start()
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline and process.poll() is None:
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            continue
        if line.startswith(READY_PREFIX):
            return int(line.removeprefix(READY_PREFIX))
    process.kill()
    process.wait(timeout=10)
    raise RuntimeError(f"fakesnow did not start: {log_file.read_text(errors='replace')[-3000:]}")
