"""What every ``elt`` command shares on the terminal: the consoles, the one-line failure,
the ``--warehouse`` option."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from flows.warehouses import DEFAULT_WAREHOUSE, WAREHOUSES

console = Console()
errors = Console(stderr=True)

WarehouseOption = Annotated[
    str | None,
    typer.Option(
        "--warehouse",
        "-w",
        help=f"One of {', '.join(WAREHOUSES)}; default: $ELT_WAREHOUSE or {DEFAULT_WAREHOUSE}.",
        show_default=False,
    ),
]


def fail(message: str) -> NoReturn:
    """One line on stderr, exit code 1."""
    # escaped: messages name settings like [sources.shop], which rich would take for markup
    errors.print(f"[red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


@contextmanager
def run_logs_in_file(folder: Path) -> Iterator[Path]:
    """Every log line of the run into ``folder/elt-<time>.log``; on the terminal only warnings
    and errors from here on (the live view shows the progress; the temporary Prefect server's
    "stopping" line comes at exit, so the terminal stays quiet after the block too).
    Prefect's UI gets every line either way."""
    from prefect.logging.formatters import PrefectFormatter
    from prefect.logging.handlers import PrefectConsoleHandler

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"elt-{time.strftime('%Y%m%d-%H%M%S')}.log"
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.INFO)
    handler.setFormatter(
        PrefectFormatter(
            "%(asctime)s | %(levelname)-7s | %(name)s - %(message)s",
            flow_run_fmt="%(asctime)s | %(levelname)-7s | Flow run %(flow_run_name)r - %(message)s",
            task_run_fmt="%(asctime)s | %(levelname)-7s | Task run %(task_run_name)r - %(message)s",
        )
    )
    root = logging.getLogger()
    for console_handler in root.handlers:
        if isinstance(console_handler, PrefectConsoleHandler):
            console_handler.setLevel(max(console_handler.level, logging.WARNING))
    root.addHandler(handler)
    try:
        yield path
    finally:
        root.removeHandler(handler)
        handler.close()
