"""A run's progress on the terminal: each stage, rows per source, dbt nodes done of total.

Why: the console is for people. Prefect keeps every log line (the UI, and the log file
the command line writes); the terminal shows this view while the run goes and the
summary after it. The flow reports to the functions below, which do nothing unless the
command line started a view (a deployment's run on a worker has none). Reports come from
the ingest threads and dbt's threads, so the state is guarded by a lock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console, RenderableType
from rich.live import Live
from rich.table import Table

STAGES = ("ingest", "raw contracts", "dbt build", "mart contracts", "publish")


@dataclass
class _Stage:
    started: float | None = None
    seconds: float | None = None
    status: str | None = None  # "ok" or "failed" once finished


@dataclass
class RunView:
    """What the view shows; updated from any thread."""

    stages: dict[str, _Stage] = field(default_factory=lambda: {name: _Stage() for name in STAGES})
    sources: dict[str, int | None] = field(default_factory=dict)  # None while loading
    dbt_total: int = 0
    dbt_done: int = 0
    contracts: dict[str, tuple[int, int]] = field(default_factory=dict)  # stage -> passed, failed
    lock: threading.Lock = field(default_factory=threading.Lock)

    def render(self) -> RenderableType:
        grid = Table.grid(padding=(0, 1))
        grid.add_column(width=1)
        grid.add_column(no_wrap=True)
        grid.add_column(justify="right", width=6)
        grid.add_column(overflow="fold")
        with self.lock:
            for name, stage in self.stages.items():
                if stage.started is None:
                    continue
                seconds = stage.seconds if stage.seconds is not None else time.perf_counter() - stage.started
                mark = {"ok": "[green]✓[/]", "failed": "[red]✗[/]"}.get(stage.status or "", "[cyan]…[/]")
                grid.add_row(mark, name, f"{seconds:.1f}s", self._detail(name))
        return grid

    def _detail(self, stage: str) -> str:
        if stage == "ingest":
            return " · ".join(
                f"{source} {'loading' if rows is None else f'{rows:,} rows'}"
                for source, rows in self.sources.items()
            )
        if stage == "dbt build" and self.dbt_total:
            return f"{self.dbt_done} of {self.dbt_total} nodes"
        if stage in self.contracts:
            passed, failed = self.contracts[stage]
            return f"{passed} passed" + (f", [red]{failed} failed[/]" if failed else "")
        return ""


# the view the command line started, if any: one per process, read from every thread
_shown: list[RunView] = []


def _current() -> RunView | None:
    return _shown[-1] if _shown else None


@contextmanager
def live_view(console: Console) -> Iterator[RunView]:
    """Show the run's progress until the block ends; the last state stays on screen.

    Not on a terminal (a log file, CI), rich prints the final state once instead of redrawing.
    """
    view = RunView()
    _shown.append(view)
    try:
        with Live(_Renderable(view), console=console, refresh_per_second=4, transient=False):
            yield view
    finally:
        _shown.remove(view)
        if not console.is_terminal:
            console.line()  # rich leaves the final state without its line break there


class _Renderable:
    def __init__(self, view: RunView) -> None:
        self.view = view

    def __rich__(self) -> RenderableType:
        return self.view.render()


def stage_started(name: str) -> None:
    if (view := _current()) is not None and name in view.stages:
        with view.lock:
            view.stages[name] = _Stage(started=time.perf_counter())


def stage_finished(name: str, seconds: float, status: str) -> None:
    if (view := _current()) is not None and name in view.stages:
        with view.lock:
            stage = view.stages[name]
            stage.started = stage.started or time.perf_counter() - seconds
            stage.seconds, stage.status = seconds, status


def source_started(source: str) -> None:
    if (view := _current()) is not None:
        with view.lock:
            view.sources.setdefault(source, None)


def source_loaded(source: str, rows: int) -> None:
    if (view := _current()) is not None:
        with view.lock:
            view.sources[source] = rows


def contracts_checked(layer: str, passed: int, failed: int) -> None:
    if (view := _current()) is not None:
        with view.lock:
            view.contracts["raw contracts" if layer == "raw" else "mart contracts"] = (passed, failed)


def dbt_event(message: Any) -> None:
    """A dbt callback: the node total from dbt's result lines, one done per finished node."""
    if (view := _current()) is None:
        return
    total = getattr(message.data, "total", 0)
    with view.lock:
        if total:
            view.dbt_total = max(view.dbt_total, int(total))
        if message.info.name == "NodeFinished":
            view.dbt_done += 1


def active() -> bool:
    return _current() is not None
