"""Build what landed: the transform that follows the per-source loads, debounced.

Each per-source run (flows/ingest_source.py) whose raw contracts pass and that loaded
rows emits the Prefect event ``elt.raw.landed`` (resource ``elt.source.<name>``). The
``build-on-arrival`` deployment has a trigger on that event; its runs queue one behind
the other (deployment concurrency limit, ENQUEUE), and every build also holds the build
lock (flows/build_lock.py), so two builds never run at once.

Prefect's reactive trigger starts one run per event, and its parameters carry one event,
so the debounce is here and what landed is read from the warehouse: a run waits until
the window (``ELT_BUILD_WINDOW_SECONDS``, default 300) has passed since the first load no
build has taken in yet, then builds everything that landed by then, in one build. The
runs queued behind it find nothing left and end at once. Anything else can start a build
the same way, by emitting the event (README, "Builds when data lands").
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Final

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from dlt_sources.registry import SOURCES
from flows.alerts import alert_failed_run, resolve_failed_run
from flows.build import build_and_publish
from flows.build_state import Load, unconsumed_loads
from flows.config import Settings, load_settings
from flows.elt import EltRunFailed
from flows.gates import gate
from flows.pipelines import raw_dataset
from flows.report import RunSummary
from flows.setting_values import float_setting

WINDOW_SETTING: Final[str] = "ELT_BUILD_WINDOW_SECONDS"


def landed_sources(settings: Settings, loads: list[Load]) -> list[str]:
    """The sources whose loads these are."""
    datasets = {load.table.schema for load in loads}
    return [source for source in SOURCES if raw_dataset(source, settings).lower() in datasets]


@flow(
    name="build-on-arrival",
    log_prints=True,
    on_failure=[alert_failed_run],
    on_crashed=[alert_failed_run],
    on_completion=[resolve_failed_run],
)
def build_on_arrival(window_seconds: float | None = None, warehouse: str | None = None) -> list[str]:
    """Wait out the window since the first load not yet built from, then build what landed.

    Returns the sources the build covered (none when an earlier run took everything in).
    """
    settings = load_settings(warehouse)
    settings.export_tool_environment()
    log = get_run_logger()
    window = float_setting(WINDOW_SETTING, 300.0) if window_seconds is None else window_seconds
    waiting = unconsumed_loads(settings)
    if not waiting:
        log.info("nothing landed since the last build")
        return []
    first = min(load.finished_at for load in waiting)
    remaining = window - (datetime.now(UTC) - first).total_seconds()
    if remaining > 0:
        log.info("first landing at %s; waiting %.0f s for the rest of the window", first, remaining)
        time.sleep(remaining)
    sources = landed_sources(settings, unconsumed_loads(settings))
    summary = RunSummary(warehouse=settings.warehouse.name)
    try:
        # the raw tables are gated again: a source whose own run failed its raw contracts
        # emitted nothing, but its rows are in the warehouse all the same
        with summary.stage("raw contracts"):
            gate(summary, "raw", settings, sources)
        build_and_publish(summary, settings, sources)
    except Exception as exc:
        _publish(summary, sources)
        raise EltRunFailed(summary) from exc
    _publish(summary, sources)
    return sources


def _publish(summary: RunSummary, sources: list[str]) -> None:
    create_markdown_artifact(
        key="build-on-arrival-report",
        markdown=f"Sources that landed: {', '.join(sources)}\n\n" + summary.to_markdown(),
        description="Build of what landed",
    )
