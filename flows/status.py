"""``elt status``: per source and table, what the on-call engineer asks first.

Last successful load and its rows (audit table) beside the rows the table holds,
freshness against the SLA (each source's record in ``dlt_sources/registry.py``), the
latest contract verdict, for CDC sources the replication slot's lag; then each published
mart with when it was last published and its rows. Everything comes from the warehouse
and the source database, never from local files, so any machine with the settings shows
the same.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from dlt.destinations.exceptions import DatabaseUndefinedRelation
from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from dlt_sources.errors import SourceError
from dlt_sources.registry import cdc_sources
from flows.audit import latest_contracts, latest_loads
from flows.build_state import latest_publishes
from flows.config import Settings, load_settings
from flows.freshness import Freshness, check_freshness
from flows.ingest import use_environment_slots
from flows.pipelines import catalog_pipeline


@dataclass(frozen=True)
class TableStatus:
    source: str  # the source, or "marts" for a published mart
    table: str
    last_load: datetime | None  # a mart: when it was last published
    rows: int | None  # rows of the last load; a mart: rows it holds
    freshness: str
    contract: str
    slot_lag_bytes: int | None
    total_rows: int | None = None

    def to_json(self) -> dict[str, object]:
        values = asdict(self)
        values["last_load"] = self.last_load.isoformat() if self.last_load else None
        return values

    @property
    def is_mart(self) -> bool:
        return self.source == MARTS


MARTS = "marts"


def collect_status(warehouse: str | None = None) -> list[TableStatus]:
    """Every raw table, then every published mart."""
    settings = load_settings(warehouse)
    loads = latest_loads(settings)
    contracts = latest_contracts(settings)
    freshness = {(result.source, result.table): result for result in check_freshness(settings)}
    lags = {source: _slot_lag(source) for source in cdc_sources()}
    loaded = {source for source, _ in loads}
    # every loaded table, plus the SLAs' tables (a source never loaded shows as <source>.*)
    tables = set(loads) | {(s, t) for s, t in freshness if t != "*" or s not in loaded}
    totals = row_counts(settings, [(settings.dataset(f"raw_{source}"), table) for source, table in loads])
    statuses = []
    for source, table in sorted(tables):
        dataset = settings.dataset(f"raw_{source}")
        rows, finished = loads.get((source, table), (None, None))
        verdict = contracts.get(f"{dataset}.{table}")
        sla = freshness.get((source, table)) or freshness.get((source, "*"))
        statuses.append(
            TableStatus(
                source=source,
                table=f"{dataset}.{table}",
                last_load=finished,
                rows=rows,
                freshness=_freshness_text(sla),
                contract=_verdict_text(verdict),
                slot_lag_bytes=lags.get(source),
                total_rows=totals.get((dataset, table)),
            )
        )
    return statuses + _published_marts(settings, contracts)


def _published_marts(
    settings: Settings, contracts: dict[str, tuple[bool, str | None, datetime]]
) -> list[TableStatus]:
    """Each published mart: when it was last published, its rows, its latest contract verdict."""
    published_schema, audit_schema = f"{settings.dbt_schema}_marts", f"{settings.dbt_schema}_marts_audit"
    published = latest_publishes(settings)
    counts = row_counts(settings, [(published_schema, mart) for mart in published])
    return [
        TableStatus(
            source=MARTS,
            table=f"{published_schema}.{mart}",
            last_load=when,
            rows=counts.get((published_schema, mart)),
            freshness="-",
            contract=_verdict_text(contracts.get(f"{audit_schema}.{mart}")),
            slot_lag_bytes=None,
            total_rows=counts.get((published_schema, mart)),
        )
        for mart, when in sorted(published.items())
    ]


def row_counts(settings: Settings, tables: list[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """Rows each ``(dataset, table)`` holds now; a table that is gone is left out."""
    counts = {}
    for dataset in sorted({dataset for dataset, _ in tables}):
        with catalog_pipeline(settings, dataset).sql_client() as client:
            for name in sorted(table for schema, table in tables if schema == dataset):
                try:
                    [(count,)] = client.execute_sql(
                        f"select count(*) from {client.make_qualified_table_name(name)}"
                    )
                except DatabaseUndefinedRelation:
                    continue
                counts[(dataset, name)] = int(count)
    return counts


def status_table(statuses: list[TableStatus]) -> Group:
    """Raw tables, published marts, then a line per problem; fits 80 columns with every
    table name whole (the details that would not fit are in the problem lines and ``--json``)."""
    raw_names = [len(status.table) for status in statuses if not status.is_mart]
    mart_names = [len(status.table) for status in statuses if status.is_mart]
    columns = ("loaded", "rows", "total", "SLA", "contract", "slot lag")
    raw = _table("Raw tables (UTC)", max(raw_names, default=5), *columns)
    marts = _table("Published marts (UTC)", max(mart_names, default=5), "published", "rows", "contract")
    problems = []
    for status in statuses:
        contract = status.contract.split(":", 1)[0]
        if status.is_mart:
            marts.add_row(status.table, _when(status.last_load), _count(status.rows), contract)
        else:
            fresh = "LATE" if status.freshness.startswith("BREACHED") else status.freshness.split(" ")[0]
            lag = None if status.slot_lag_bytes is None else status.slot_lag_bytes / 1_048_576
            raw.add_row(
                status.table,
                _when(status.last_load),
                _count(status.rows),
                _count(status.total_rows),
                "-" if fresh == "no" else fresh,
                contract,
                "-" if lag is None else f"{lag:,.0f} MB",
            )
            if status.freshness.startswith("BREACHED"):
                problems.append(f"{status.table}: freshness {status.freshness}")
        if contract == "FAILED":
            problems.append(f"{status.table}: contract {status.contract}")
    parts: list[Any] = [raw]
    if marts.row_count:
        parts.append(marts)
    parts += [Text(problem, style="red") for problem in problems]
    return Group(*parts)


def _table(title: str, name_width: int, *columns: str) -> Table:
    """A plain table: no vertical rules, two spaces between columns; counts on the right."""
    table = Table(
        title=title,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        padding=(0, 1, 0, 0),
        pad_edge=False,
        show_edge=False,
    )
    table.add_column("table", no_wrap=True, min_width=name_width)
    for column in columns:
        table.add_column(
            column, justify="right" if column in ("rows", "total", "slot lag") else "left", no_wrap=True
        )
    return table


def _when(moment: datetime | None) -> str:
    return f"{moment:%m-%d %H:%M}" if moment else "never"


def _count(rows: int | None) -> str:
    """Up to 99,999 as is, then 123.5k, 12.3M, 4.6B: the exact figure is in ``--json``."""
    if rows is None:
        return "-"
    for threshold, divisor, unit in ((1e9, 1e9, "B"), (1e6, 1e6, "M"), (1e5, 1e3, "k")):
        if rows >= threshold:
            return f"{rows / divisor:.1f}{unit}"
    return f"{rows:,}"


def _verdict_text(verdict: tuple[bool, str | None, datetime] | None) -> str:
    return "-" if verdict is None else ("passed" if verdict[0] else f"FAILED: {verdict[1]}")


def _freshness_text(result: Freshness | None) -> str:
    if result is None:
        return "no SLA"
    return f"BREACHED ({result.describe()})" if result.breached else f"ok ({result.describe()})"


def _slot_lag(source: str) -> int | None:
    """Retained WAL bytes of the source's slot; None when the source is not configured here."""
    from dlt.common.configuration.exceptions import ConfigFieldMissingException

    from dlt_sources.postgres_cdc import catalog, resolve_settings

    try:
        use_environment_slots()
        settings = resolve_settings(source)
        with catalog.connection(settings.dsn, source) as conn:
            slot = catalog.slot_info(conn, settings.slot_name)
    except (ConfigFieldMissingException, SourceError):
        return None
    return None if slot is None else slot.retained_bytes
