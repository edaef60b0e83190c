"""``elt status``: per source and table, what the on-call engineer asks first.

Last successful load and its rows (audit table), freshness against the SLA (each
source's record in ``dlt_sources/registry.py``), the latest contract verdict, and for
CDC sources the replication slot's lag. Everything comes from the warehouse and the source database,
never from local files, so any machine with the settings shows the same.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime

from rich.table import Table

from dlt_sources.errors import SourceError
from dlt_sources.registry import cdc_sources
from flows.audit import latest_contracts, latest_loads
from flows.config import load_settings
from flows.freshness import Freshness, check_freshness
from flows.ingest import use_environment_slots


@dataclass(frozen=True)
class TableStatus:
    source: str
    table: str
    last_load: datetime | None
    rows: int | None
    freshness: str
    contract: str
    slot_lag_bytes: int | None

    def to_json(self) -> dict[str, object]:
        values = asdict(self)
        values["last_load"] = self.last_load.isoformat() if self.last_load else None
        return values


def collect_status(warehouse: str | None = None) -> list[TableStatus]:
    settings = load_settings(warehouse)
    loads = latest_loads(settings)
    contracts = latest_contracts(settings)
    freshness = {(result.source, result.table): result for result in check_freshness(settings)}
    lags = {source: _slot_lag(source) for source in cdc_sources()}
    loaded = {source for source, _ in loads}
    # every loaded table, plus the SLAs' tables (a source never loaded shows as <source>.*)
    tables = set(loads) | {(s, t) for s, t in freshness if t != "*" or s not in loaded}
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
                contract="-" if verdict is None else ("passed" if verdict[0] else f"FAILED: {verdict[1]}"),
                slot_lag_bytes=lags.get(source),
            )
        )
    return statuses


def status_table(statuses: list[TableStatus]) -> Table:
    """The status as a table; in a narrow terminal the other columns wrap, the table name never does."""
    table = Table(title="ELT status", title_justify="left")
    longest_name = max((len(status.table) for status in statuses), default=5)
    table.add_column("table", no_wrap=True, min_width=longest_name)
    for column, justify in [
        ("last successful load (UTC)", "left"),
        ("rows", "right"),
        ("freshness", "left"),
        ("contract", "left"),
        ("CDC slot lag", "right"),
    ]:
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for status in statuses:
        table.add_row(
            status.table,
            f"{status.last_load:%Y-%m-%d %H:%M:%S}" if status.last_load else "never",
            "-" if status.rows is None else f"{status.rows:,}",
            status.freshness,
            status.contract,
            "-" if status.slot_lag_bytes is None else f"{status.slot_lag_bytes / 1_048_576:,.1f} MB",
        )
    return table


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
