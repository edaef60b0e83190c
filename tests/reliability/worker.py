"""One flow run of the campaign, in a process of its own so the campaign can SIGKILL it.

Runs the real flows (``elt`` for the whole pipeline, ``ingest-source`` per source for an
ingest-only round) against the Prefect API in ``PREFECT_API_URL``. Before each step it
prints ``MARK <stage> [<dlt pipeline>]`` on stdout, so the campaign knows where a kill
lands: the wrappers only announce and then call the product's own functions unchanged.

The campaign forks each run from tests/reliability/zygote.py, which calls ``instrument()``
once and ``run()`` per child; by hand: ``python -m tests.reliability.worker full|ingest
SOURCE…``. Exit status 0 when the run passed, 1 with ``FAILED <first line>`` when it failed.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any

import dlt

STAGES = ("extract", "normalize", "load", "dbt", "contracts", "publish")


def mark(stage: str, detail: str = "") -> None:
    """Straight to the stdout file descriptor: the flows' ``log_prints`` turns print() into log records."""
    os.write(1, f"MARK {stage} {detail}".rstrip().encode() + b"\n")


def _announcing(stage: str, fn: Callable[..., Any], only_for: str | None = None) -> Callable[..., Any]:
    @functools.wraps(fn)
    def announced(*args: Any, **kwargs: Any) -> Any:
        if only_for is None or (args and args[0] == only_for):
            mark(stage)
        return fn(*args, **kwargs)

    return announced


def _announcing_step(step: str) -> Callable[..., Any]:
    """A dlt step that names its pipeline (``elt_<source>``, or ``elt_audit`` for the audit rows)."""
    original = getattr(dlt.Pipeline, step)

    @functools.wraps(original)
    def announced(self: dlt.Pipeline, *args: Any, **kwargs: Any) -> Any:
        mark(step, self.pipeline_name)
        return original(self, *args, **kwargs)

    return announced


def instrument() -> None:
    """Announce every stage of the flows as it starts."""
    import flows.build
    import flows.elt
    import flows.ingest_source

    for step in ("extract", "normalize", "load"):
        setattr(dlt.Pipeline, step, _announcing_step(step))
    flows.build.run_dbt_build = _announcing("dbt", flows.build.run_dbt_build)
    for module in (flows.elt, flows.build, flows.ingest_source):
        module.gate = _announcing("contracts", module.gate)
    flows.build.run_dbt_operation = _announcing("publish", flows.build.run_dbt_operation, "publish_marts")


def run(mode: str, sources: list[str]) -> int:
    """One run of the instrumented flows; its exit status."""
    from flows.elt import EltRunFailed, elt
    from flows.ingest_source import ingest_source
    from flows.redact import first_line

    try:
        if mode == "full":
            elt(sources=sources)
        else:
            for source in sources:
                ingest_source(source)
    except EltRunFailed as exc:
        print(f"FAILED {first_line(exc.summary.error or str(exc))}", flush=True)
        return 1
    except Exception as exc:  # a crash outside the stages: report it like a failed run
        print(f"FAILED {type(exc).__name__}: {first_line(str(exc))}", flush=True)
        return 1
    mark("done")
    return 0


if __name__ == "__main__":
    instrument()
    sys.exit(run(sys.argv[1], sys.argv[2:]))
