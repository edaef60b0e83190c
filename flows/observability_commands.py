"""Commands that look into what the runs recorded: ``elt lineage``, ``elt metrics serve`` and
``elt anomalies`` (list the latest verdicts, acknowledge a change)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from flows.config import ConfigError, load_settings
from flows.terminal import WarehouseOption, console
from flows.terminal import fail as _fail


def lineage(
    reference: Annotated[str, typer.Argument(help="schema.table or schema.table.column")],
    upstream: Annotated[
        bool, typer.Option("--upstream/--downstream", help="Where it comes from (default) or what it feeds.")
    ] = True,
    warehouse: WarehouseOption = None,
) -> None:
    """Column lineage from the source system's field to the mart column, as the runs recorded it."""
    from flows.lineage.command import lineage_trees

    try:
        trees = lineage_trees(load_settings(warehouse), reference, upstream=upstream)
    except (ConfigError, LookupError) as exc:
        _fail(str(exc).strip("'\""))
    for tree in trees:
        console.print(tree)


metrics = typer.Typer(help="Prometheus metrics read from the audit tables (README: Metrics and dashboards).")


@metrics.command("serve")
def metrics_serve(
    port: Annotated[int, typer.Option(help="Port to serve /metrics on.")] = 9464,
    host: Annotated[
        str, typer.Option(help="Address to bind; 127.0.0.1 keeps it on this machine.")
    ] = "127.0.0.1",
    warehouse: WarehouseOption = None,
) -> None:
    """Serve /metrics to Prometheus, read from the warehouse's audit tables at each scrape, until Ctrl-C."""
    from flows.metrics import serve

    try:
        serve(load_settings(warehouse), host, port)
    except ConfigError as exc:
        _fail(str(exc))


anomalies = typer.Typer(help="Anomaly verdicts over loads, profiles and stage timings (flows/anomalies.py).")


@anomalies.command("list")
def anomalies_list(
    everything: Annotated[bool, typer.Option("--all", help="Every series, not only flagged ones.")] = False,
    warehouse: WarehouseOption = None,
) -> None:
    """The latest verdict of each series: value, expected value, band, score, level."""
    from flows.anomalies import latest_verdicts

    try:
        verdicts = latest_verdicts(load_settings(warehouse))
    except ConfigError as exc:
        _fail(str(exc))
    shown = [v for v in verdicts if everything or v.level in ("warn", "fail")]
    if not shown:
        console.print("no series out of its band" if not everything else "no verdicts recorded yet")
        return
    table = Table(title="Anomaly verdicts", title_justify="left")
    table.add_column("table", overflow="fold")
    table.add_column("metric", overflow="fold")
    for column in ("value", "band", "score", "level"):
        table.add_column(column, no_wrap=True, justify="left" if column in ("band", "level") else "right")
    for v in shown:
        band = "" if v.lower is None else f"{v.lower:,.4g} .. {v.upper:,.4g}"
        score = "" if v.score is None else f"{v.score:+.1f}"
        table.add_row(
            escape(f"{v.dataset}.{v.table_name}"), escape(v.metric), f"{v.value:,.4g}", band, score, v.level
        )
    console.print(table)


@anomalies.command("ack")
def anomalies_ack(
    table: Annotated[str, typer.Argument(help="schema.table, e.g. raw_shop.orders")],
    metric: Annotated[str, typer.Argument(help="The series, e.g. rows_per_load or email.null_fraction")],
    note: Annotated[str | None, typer.Option(help="Why the change is expected (kept in the audit).")] = None,
    warehouse: WarehouseOption = None,
) -> None:
    """Accept a series' new level now: the next run judges it against the new level."""
    from flows.anomalies import acknowledge

    dataset, _, name = table.rpartition(".")
    if not dataset:
        _fail(f"{table!r}: name the table as schema.table, e.g. raw_shop.orders")
    try:
        ack = acknowledge(load_settings(warehouse), dataset, name, metric, note)
    except ConfigError as exc:
        _fail(str(exc))
    console.print(f"acknowledged {table} {metric} at {ack.acked_at:%Y-%m-%d %H:%M} UTC by {ack.acked_by}")
