"""Run the BigQuery emulator (bqemulator, with tests/emulators/bigquery/shims.py) for a test.

Why a subprocess: bqemulator pins a sqlglot the project's environment cannot have, so it
runs from its own locked environment, tests/emulators/bigquery/.venv (``make install-dev``).
The clients under test (google-cloud-bigquery, dlt, dbt-bigquery, soda-bigquery) reach it
over HTTP exactly as they would reach BigQuery. :func:`client_environment` is every
client-side setting the emulator needs, all of it generic configuration (environment
variables), so nothing in flows/ or transform/ knows about the emulator.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import stop_process_group

EMULATOR_DIR = Path(__file__).resolve().parent / "bigquery"
EMULATOR_PYTHON = EMULATOR_DIR / ".venv" / "bin" / "python"
READY_PREFIX = "BQEMULATOR_READY "
PROJECT = "elt-emulator"
# the one access token the emulator accepts (tests/emulators/bigquery/shims.py)
TOKEN = "emulator-token"


class EmulatorNotAvailable(RuntimeError):
    """The emulator's environment is missing or it did not start; the message says why."""


@dataclass(frozen=True)
class BigQueryEmulator:
    """A running emulator: its REST endpoint and the folder holding its files."""

    endpoint: str
    project: str
    workdir: Path
    log: Path

    def client_environment(self) -> dict[str, str]:
        """Settings for every client: credentials, project, endpoint, and the emulator's gaps.

        - ADC file: an ``authorized_user`` whose access token never expires, so google-auth
          never tries to refresh it against Google (the emulator accepts any token).
        - ``BIGQUERY_EMULATOR_HOST``: google-cloud-bigquery's endpoint override, the only
          way to point dlt's client elsewhere (dlt has no endpoint setting).
        - ``DESTINATION__BIGQUERY__API_ENDPOINT``: the platform's endpoint setting (dbt, Soda).
        - ``DATA_WRITER__DISABLE_COMPRESSION``: the emulator cannot read gzip load files.
        - ``ELT_BIGQUERY_JOB_RETRIES=0``: a failed dbt query fails at once.
        """
        adc = self.workdir / "application_default_credentials.json"
        adc.write_text(
            json.dumps(
                {
                    "type": "authorized_user",
                    "client_id": "emulator",
                    "client_secret": "emulator",
                    "refresh_token": "emulator",
                    "token": TOKEN,
                    "expiry": "2999-01-01T00:00:00Z",
                }
            )
        )
        return {
            "ELT_WAREHOUSE": "bigquery",
            "GOOGLE_APPLICATION_CREDENTIALS": str(adc),
            "DESTINATION__BIGQUERY__PROJECT_ID": self.project,
            "DESTINATION__BIGQUERY__LOCATION": "US",
            "DESTINATION__BIGQUERY__API_ENDPOINT": self.endpoint,
            "BIGQUERY_EMULATOR_HOST": self.endpoint,
            "DATA_WRITER__DISABLE_COMPRESSION": "true",
            "ELT_BIGQUERY_JOB_RETRIES": "0",
            "ELT_BIGQUERY_JOB_TIMEOUT_SECONDS": "120",
        }


@contextmanager
def bigquery_emulator(workdir: Path, start_timeout_s: float = 90.0) -> Iterator[BigQueryEmulator]:
    """Start the emulator on a free port, wait until it answers, stop it (and its children) after.

    Its temporary files (upload staging, ``bqemu_uploads``) stay inside ``workdir``.
    """
    if not EMULATOR_PYTHON.exists():
        raise EmulatorNotAvailable(
            f"{EMULATOR_PYTHON} not found: run `make install-dev` to create the emulator's environment"
        )
    workdir.mkdir(parents=True, exist_ok=True)
    tmp = workdir / "tmp"
    tmp.mkdir(exist_ok=True)
    log = workdir / "bqemulator.log"
    environment = {key: value for key, value in os.environ.items() if not key.startswith("BQEMU_")}
    environment |= {"TMPDIR": str(tmp), "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [
                str(EMULATOR_PYTHON),
                str(EMULATOR_DIR / "serve.py"),
                "--project",
                PROJECT,
                "--staging-dir",
                str(tmp / "uploads"),
                "--token",
                TOKEN,
            ],
            stdout=subprocess.PIPE,
            stderr=log_file,
            env=environment,
            cwd=workdir,
            start_new_session=True,
        )
        try:
            port = _wait_until_ready(process, log, start_timeout_s)
            yield BigQueryEmulator(
                endpoint=f"http://127.0.0.1:{port}", project=PROJECT, workdir=workdir, log=log
            )
        finally:
            _stop(process)


def _wait_until_ready(process: subprocess.Popen[bytes], log: Path, timeout_s: float) -> int:
    """The REST port, read from the launcher's one stdout line once both servers listen."""
    import selectors

    assert process.stdout is not None
    deadline = time.monotonic() + timeout_s
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise EmulatorNotAvailable(f"bqemulator exited with {process.returncode}: {_tail(log)}")
            if selector.select(timeout=0.5):
                line = process.stdout.readline().decode(errors="replace")
                if line.startswith(READY_PREFIX):
                    fields = dict(item.split("=", 1) for item in line[len(READY_PREFIX) :].split())
                    return int(fields["rest"])
    raise EmulatorNotAvailable(f"bqemulator did not start within {timeout_s:.0f}s: {_tail(log)}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the emulator's process group, SIGKILL it if it lingers."""
    stop_process_group(process, grace_s=10)
    if process.stdout is not None:
        process.stdout.close()


def _tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
