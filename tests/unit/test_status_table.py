"""`elt status` in a narrow terminal: every table name whole, the problems spelled out below."""

from __future__ import annotations

from datetime import datetime

from rich.console import Console

from flows.status import MARTS, TableStatus, status_table


def test_every_table_name_is_whole_at_80_columns_and_problems_get_a_line() -> None:
    loaded = datetime(2026, 12, 7, 8, 0)
    raw = ["raw_example_tickets.tickets", "raw_stripe.charges"]
    statuses = [
        TableStatus("stripe", name, loaded, 123_456, "ok (3 min ago)", "passed", None, 987_654_321)
        for name in raw
    ]
    statuses.append(
        TableStatus(
            "shop",
            "raw_shop.orders",
            loaded,
            12,
            "BREACHED (raw_shop.orders: last loaded …, SLA 1h)",
            "FAILED: check 'missing id' failed (missing_count=3)",
            5 * 1_048_576,
            1_000_000,
        )
    )
    statuses.append(
        TableStatus(
            MARTS, "analytics_marts.fct_engineering_lead_times", loaded, 4_200, "-", "passed", None, 4_200
        )
    )
    console = Console(width=80, record=True)
    console.print(status_table(statuses))
    lines = console.export_text().splitlines()
    assert max(len(line) for line in lines) <= 80
    for status in statuses:
        assert any(status.table in line for line in lines), "\n".join(lines)
    row = next(line for line in lines if line.startswith("raw_stripe.charges"))
    assert row.split()[1:] == ["12-07", "08:00", "123.5k", "987.7M", "ok", "passed", "-"]
    assert any(line.startswith("Published marts") for line in lines)
    assert "raw_shop.orders: contract FAILED: check 'missing id' failed (missing_count=3)" in lines
    assert any(line.startswith("raw_shop.orders: freshness BREACHED") for line in lines)
