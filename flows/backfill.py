"""Backfills: reload a time window of a source in checkpointed chunks, then rebuild its marts.

    elt backfill --source inventory --start 2026-01-01 --end 2026-01-08 --chunk 1d

Each chunk is one load of the window ``[chunk start, chunk end)`` through the source's own
backfill setting (``sources.<name>.backfill``: the SQL database source reloads exactly the
rows whose cursor is in the window, merges them on the primary key, and leaves the stored
cursor alone). A chunk is checkpointed in the warehouse (``elt_audit.backfills``) once it
is loaded, so a backfill that crashed resumes at the first chunk not done; merging makes a
repeated chunk harmless, and running the whole backfill twice changes nothing. At the end
dbt rebuilds the models downstream of the source, which pass their contracts before they
are published, as in the nightly run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from prefect import flow, get_run_logger

from dlt_sources.errors import SourceError
from dlt_sources.sql_database import declared_databases
from flows.alerts import alert_failed_run, resolve_failed_run
from flows.audit import now, query_audit, record, utc
from flows.build import build_and_publish
from flows.config import Settings, environment, load_settings
from flows.elt import EltRunFailed
from flows.freshness import parse_duration
from flows.gates import run_id
from flows.ingest import ingest_sources
from flows.report import RunSummary


@dataclass(frozen=True)
class Chunk:
    start: datetime
    end: datetime

    def window(self) -> str:
        return f"{self.start.isoformat()}/{self.end.isoformat()}"


@dataclass(frozen=True)
class BackfillCheckpoint:
    """A chunk of a backfill that is loaded (a row of ``elt_audit.backfills``)."""

    backfill_id: str
    source: str
    chunk_start: datetime
    chunk_end: datetime
    rows: int
    run_id: str
    finished_at: datetime


@dataclass
class BackfillSummary:
    backfill_id: str
    chunks_loaded: list[str] = field(default_factory=list)
    chunks_skipped: list[str] = field(default_factory=list)
    rows: int = 0
    # rows of forgotten people the chunks kept out (dropped or redacted; flows/privacy/)
    kept_out: int = 0


def chunks(start: date, end: date, chunk: str) -> list[Chunk]:
    """``[start, end)`` cut into ``chunk``-long windows (the last may be shorter)."""
    step = parse_duration(chunk, "--chunk")
    begin = datetime.combine(start, datetime.min.time())
    stop = datetime.combine(end, datetime.min.time())
    if stop <= begin:
        raise SourceError(f"backfill window {start}..{end}: --end must be after --start")
    windows = []
    while begin < stop:
        windows.append(Chunk(begin, min(begin + step, stop)))
        begin += step
    return windows


def plan(source: str, start: date, end: date, chunk: str) -> list[Chunk]:
    """The chunks of a backfill, or a clear error for a source or window that can't be backfilled."""
    if source not in backfill_sources():
        raise SourceError(
            f"source {source!r} can't reload a time window; backfills work for the SQL database "
            f"sources ({', '.join(backfill_sources()) or 'none configured'}). "
            "A CDC source reloads everything with `elt cdc resnapshot`."
        )
    return chunks(start, end, chunk)


def backfill_sources() -> list[str]:
    """Sources that can reload a window: the SQL databases (their tables with a cursor)."""
    return sorted(declared_databases())


@flow(
    name="backfill",
    log_prints=True,
    on_failure=[alert_failed_run],
    on_crashed=[alert_failed_run],
    on_completion=[resolve_failed_run],
)
def backfill(
    source: str,
    start: date,
    end: date,
    chunk: str = "1d",
    restart: bool = False,
    warehouse: str | None = None,
) -> BackfillSummary:
    """Reload ``[start, end)`` of ``source`` chunk by chunk, resumable; then rebuild its marts.

    ``restart`` reloads every chunk, also those a previous run of this backfill finished.
    """
    windows = plan(source, start, end, chunk)
    settings = load_settings(warehouse)
    settings.export_tool_environment()
    log = get_run_logger()
    summary = BackfillSummary(backfill_id=f"{source}:{start.isoformat()}/{end.isoformat()}:{chunk}")
    done = set() if restart else _finished_chunks(settings, summary.backfill_id)
    for window in windows:
        if window.start in done:
            summary.chunks_skipped.append(window.window())
            continue
        with environment({f"SOURCES__{source.upper()}__BACKFILL": window.window()}):
            [result] = ingest_sources([source], settings, run_id=run_id())
        summary.chunks_loaded.append(window.window())
        summary.rows += result.total_rows
        summary.kept_out += sum(result.erased.values())
        checkpoint = BackfillCheckpoint(
            summary.backfill_id, source, window.start, window.end, result.total_rows, run_id(), now()
        )
        record(settings, "backfills", [checkpoint])
        log.info("backfill %s: chunk %s loaded (%d rows)", source, window.window(), result.total_rows)
    report = RunSummary(warehouse=settings.warehouse.name)
    try:
        # what the reloaded tables feed; the facts pick the rows up by their new load ids
        build_and_publish(report, settings, [source])
    except Exception as exc:
        raise EltRunFailed(report) from exc
    return summary


def _finished_chunks(settings: Settings, backfill_id: str) -> set[datetime]:
    """Chunk starts (naive UTC) this backfill already loaded, from the warehouse."""
    quoted = backfill_id.replace("'", "''")
    sql = f"select chunk_start from {{table}} where backfill_id = '{quoted}'"
    return {utc(value).replace(tzinfo=None) for (value,) in query_audit(settings, "backfills", sql)}
