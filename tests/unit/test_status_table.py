"""`elt status` in a narrow terminal: the other columns wrap, a table's name never does."""

from __future__ import annotations

from datetime import datetime

from rich.console import Console

from flows.status import TableStatus, status_table


def test_every_table_name_is_whole_at_80_columns() -> None:
    names = ["raw_example_tickets.tickets", "raw_stripe.charges", "analytics_marts.fct_engineering_times"]
    loaded = datetime(2026, 12, 7, 8, 0)
    statuses = [
        TableStatus("stripe", name, loaded, 123_456, "ok (3 min ago)", "passed", None) for name in names
    ]
    console = Console(width=80, record=True)
    console.print(status_table(statuses))
    lines = console.export_text().splitlines()
    assert max(len(line) for line in lines) <= 80
    for name in names:
        assert any(name in line for line in lines), "\n".join(lines)
