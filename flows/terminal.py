"""What every ``elt`` command shares on the terminal: the consoles, the one-line failure,
the ``--warehouse`` option."""

from __future__ import annotations

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
