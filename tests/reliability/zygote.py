"""The campaign's child runs, forked from one process that has already imported the flows.

Why: a child run used to be a fresh ``python -m tests.reliability.worker``, and importing
the flows (Prefect, dlt, pandas, the sources) costs ~6.5 s of CPU before a run does
anything; the light campaign, which ``make test`` runs beside the suite on two cores, makes
18 runs (its CPU in a suite run: 248 s before, 185 s after). A forked child is still a
process of its own, in a session of its own, killed the same way (``os.killpg``); only the
imports are shared. The parent only imports and forks: it refuses to fork with a second
Python thread running (the one other thread it has is a jemalloc background thread,
pyarrow's or DuckDB's allocator, which jemalloc makes fork-safe with ``pthread_atfork``
handlers). Each child starts as a fresh process would: its own environment applied,
``random`` re-seeded, the cached temporary directory forgotten (``TMPDIR`` may differ).

Protocol, one run at a time: a JSON line ``{"mode", "sources", "env", "stderr"}`` on stdin;
on stdout ``<CONTROL>PID <pid>``, then every line the child prints, then
``<CONTROL>EXIT <status>`` (negative: killed by that signal, as subprocess reports it).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

CONTROL = "\x00zygote "


def _child(request: dict[str, Any], write_end: int) -> None:
    """In the forked child: become a fresh run, then exit with its status (never returns)."""
    status = 1
    try:
        os.setsid()
        os.environ.update(request["env"])
        random.seed()
        tempfile.tempdir = None
        os.dup2(write_end, 1)
        os.dup2(os.open(request["stderr"], os.O_WRONLY | os.O_APPEND | os.O_CREAT), 2)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
        from tests.reliability.worker import run

        status = run(request["mode"], request["sources"])
    except BaseException:  # what run() does not report itself goes to the run's stderr
        traceback.print_exc()
    finally:
        os._exit(status)


def _serve() -> None:
    # dbt, which the flows import on first use; not Soda, whose import starts a thread
    # (OpenTelemetry's span processor) that a fork would leave behind in a locked state
    import dbt.cli.main  # noqa: F401

    from tests.reliability.worker import instrument

    instrument()  # the flows and their stage marks, imported once for every child
    out = sys.stdout
    for line in sys.stdin:
        if threading.active_count() != 1:
            raise RuntimeError(f"not forking with {threading.active_count()} threads running")
        request = json.loads(line)
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_end)
            _child(request, write_end)
        os.close(write_end)
        out.write(f"{CONTROL}PID {pid}\n")
        out.flush()
        with os.fdopen(read_end) as child_out:
            for child_line in child_out:
                out.write(child_line)
                out.flush()
        _, wait_status = os.waitpid(pid, 0)
        out.write(f"{CONTROL}EXIT {os.waitstatus_to_exitcode(wait_status)}\n")
        out.flush()


class Zygote:
    """The forking process, started once per campaign with the environment every run shares."""

    def __init__(self, environment: dict[str, str], cwd: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.reliability.zygote"],
            cwd=cwd,
            env=environment,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    @property
    def _stdout(self) -> IO[str]:
        assert self.process.stdout is not None
        return self.process.stdout

    def start(self, mode: str, sources: list[str], env: dict[str, str], stderr: Path) -> int:
        """Fork a run; returns its pid (also its process group)."""
        assert self.process.stdin is not None
        self.exit_status: int | None = None
        request = {"mode": mode, "sources": sources, "env": env, "stderr": str(stderr)}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        return int(self._control("PID"))

    def lines(self) -> Iterator[str]:
        """What the run prints, until it ends; then ``exit_status`` is known."""
        for line in self._stdout:
            if line.startswith(f"{CONTROL}EXIT "):
                self.exit_status = int(line.split()[-1])
                return
            yield line
        raise RuntimeError(f"the zygote ended (status {self.process.wait()})")

    def wait(self) -> int:
        """Drain what is left of the run's output; its exit status."""
        if self.exit_status is None:
            for _ in self.lines():
                pass
        assert self.exit_status is not None
        return self.exit_status

    def _control(self, word: str) -> str:
        line = self._stdout.readline()
        if not line.startswith(f"{CONTROL}{word} "):
            raise RuntimeError(f"the zygote answered {line!r} (status {self.process.poll()})")
        return line.split()[-1]

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(30)


if __name__ == "__main__":
    _serve()
