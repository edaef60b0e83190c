"""Ingest stage: one dlt pipeline per source, each run as its own Prefect task.

Each source registered in ``dlt_sources/registry.py`` loads the dataset ``raw_<source>``.
dlt keeps the cursors in the pipeline state, which it stores in the warehouse next to the
data, so a retry on a fresh worker with an empty disk restores it from there and resumes.
Transient failures (a source that does not answer, HTTP 429/5xx) are retried;
everything else (bad settings, rejected credentials) fails at once.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Sequence
from typing import Any, TypeVar

import dlt

# Imported up front, in the main thread: dlt imports pyarrow (and pandas, where a
# warehouse extra installs it) lazily, and two ingest tasks importing one at once in
# their threads see a half-initialised module ("partially initialized module 'pandas'").
import pyarrow  # noqa: F401
from dlt.common.configuration.exceptions import ConfigFieldMissingException
from dlt.common.destination.exceptions import DestinationTransientException
from dlt.common.schema.exceptions import DataValidationError
from dlt.pipeline.exceptions import PipelineStepFailed
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from dlt_sources.common.http import ApiError
from dlt_sources.common.packages import discard_committed_extracts, forget_state_unknown_to_warehouse
from dlt_sources.common.privacy import TombstoneGuard
from dlt_sources.errors import SourceError, SourceUnreachable
from dlt_sources.registry import SOURCES, cdc_sources
from flows import progress
from flows.audit import FAILED, LOADED, LoadRecord, now, record
from flows.config import ConfigError, Settings, schema_prefix
from flows.errors import cause_chain
from flows.lineage import current as current_lineage
from flows.pipelines import raw_dataset, source_pipeline
from flows.privacy.tombstones import stored_tombstones
from flows.redact import first_line
from flows.results import IngestResult

with contextlib.suppress(ImportError):
    import pandas  # noqa: F401


def use_environment_slots() -> None:
    """Give every environment (``ELT_ENV=dev`` …) its own CDC replication slot.

    A slot belongs to the warehouse dataset it feeds: a developer's first run would
    otherwise drop and re-create production's slot to take its snapshot, and production's
    next run would fail with SlotLost. A ``sources.<name>.slot_name`` set anywhere still wins.
    """
    prefix = schema_prefix()
    for source in cdc_sources() if prefix else ():
        if dlt.config.get(f"sources.{source}.slot_name") is None:
            os.environ[f"SOURCES__{source.upper()}__SLOT_NAME"] = f"{prefix}elt_{source}"


E = TypeVar("E", bound=BaseException)

# Warehouse errors that pass by themselves: DuckDB's file lock held by another process,
# lock timeouts and deadlocks, rate limits, a busy or resuming warehouse, a reset connection.
_WAREHOUSE_BUSY = re.compile(
    r"could not set lock on file|lock (wait )?time ?out|deadlock|too many requests|rate ?limit"
    r"|warehouse .*(busy|resuming|overloaded)|temporarily unavailable|connection (reset|aborted)",
    re.IGNORECASE,
)


def unknown_sources(names: list[str]) -> list[str]:
    return [name for name in names if name not in SOURCES]


class IngestFailed(Exception):
    """A load failed for a reason that is not the source's own (the worker's disk is full, a
    bug): the message adds the source's name, the original error stays chained."""


def run_source(source: str, settings: Settings) -> IngestResult:
    """Extract, normalize and load one source; no Prefect here so tests can call it."""
    if source not in SOURCES:
        raise SourceError(f"unknown source {source!r}; known sources: {', '.join(SOURCES)}")
    spec = SOURCES[source]
    started, started_at = time.perf_counter(), now()
    use_environment_slots()
    pipeline = source_pipeline(source, settings)
    discard_committed_extracts(pipeline)  # a worker killed mid-normalize must not block the next run
    guard = None
    try:
        if forget_state_unknown_to_warehouse(pipeline):  # the warehouse, not this disk, holds the cursors
            pipeline = source_pipeline(source, settings)
        data = spec.factory()
        guard = guard_against_forgotten(source, pipeline, data, settings)
        load_info = pipeline.run(data, loader_file_format=settings.loader_file_format)
    except ConfigFieldMissingException as exc:
        raise missing_settings_error(source, exc) from None
    except PipelineStepFailed as exc:
        # dlt wraps the source's own error; surface it so the message names the source.
        cause = source_error_in(exc) or contract_error_in(source, exc) or settings.login_error(exc)
        if cause is not None:
            raise cause from exc
        raise
    except Exception as exc:  # the warehouse refused the connection before dlt's steps began
        cause = settings.login_error(exc)
        if cause is not None:
            raise cause from exc
        raise
    load_info.raise_on_failed_jobs()
    new_tables, new_columns = _schema_changes(load_info, pipeline.default_schema)
    after_load = spec.after_load(pipeline) if spec.after_load else None
    normalized = pipeline.last_trace.last_normalize_info
    rows = {
        table: count
        for table, count in (normalized.row_counts if normalized else {}).items()
        if not table.startswith("_dlt")
    }
    erased = guard.counts() if guard else {}
    notes = list(after_load.notes) if after_load else []
    if erased:
        tables = ", ".join(f"{table} {count}" for table, count in sorted(erased.items()))
        notes.append(f"{sum(erased.values())} rows of forgotten people kept out ({tables})")
    return IngestResult(
        source=source,
        dataset=raw_dataset(source, settings),
        rows=rows,
        duration_s=time.perf_counter() - started,
        started_at=started_at,
        finished_at=now(),
        tables=sorted(pipeline.default_schema.data_table_names()),
        load_ids=list(load_info.loads_ids),
        new_tables=new_tables,
        schema_changes=new_columns,
        notes=notes,
        warnings=list(after_load.warnings) if after_load else [],
        slot_lag_bytes=dict(after_load.slot_lag_bytes) if after_load else {},
        columns=_columns(pipeline.default_schema),
        loaded_bytes=_loaded_bytes(load_info),
        erased=erased,
    )


def guard_against_forgotten(
    source: str, pipeline: dlt.Pipeline, data: Any, settings: Settings
) -> TombstoneGuard | None:
    """Put the tombstone guard on every resource of ``data``, when anyone was ever forgotten.

    Load packages still pending from before the latest erasure were extracted without
    knowing of it: they are dropped, and the source reads their rows again (their cursors
    and CDC positions commit only with a load), this time through the guard.
    """
    spec = SOURCES[source]
    stored = stored_tombstones(settings) if spec.privacy else None
    if stored is None:
        return None
    cutoff = stored.newest.timestamp()
    pending = [*pipeline.list_extracted_load_packages(), *pipeline.list_normalized_load_packages()]
    if any(float(load_id) < cutoff for load_id in pending):
        pipeline.drop_pending_packages()
    guard = TombstoneGuard(spec.privacy, stored.tombstones)
    for resource in getattr(data, "resources", {data.name: data}).values():
        table = resource.table_name if isinstance(resource.table_name, str) else resource.name
        resource.add_step(guard.step(table))
    return guard


def _columns(schema: Any) -> dict[str, dict[str, str]]:
    """Each data table's columns and dlt data types, as the lineage schema facet shows them."""
    return {
        table: {name: str(column.get("data_type", "")) for name, column in columns.items()}
        for table in schema.data_table_names()
        if (columns := schema.get_table_columns(table))
    }


def _loaded_bytes(load_info: Any) -> dict[str, int]:
    """Bytes of the files each table's load jobs loaded (the lineage output statistics)."""
    sizes: dict[str, int] = {}
    for package in load_info.load_packages:
        for job in package.jobs.get("completed_jobs", []):
            table = job.job_file_info.table_name
            if not table.startswith("_dlt"):
                sizes[table] = sizes.get(table, 0) + job.file_size
    return sizes


def _schema_changes(load_info: Any, schema: Any) -> tuple[dict[str, int], list[str]]:
    """What this load added to the raw schema: new tables (with their column count) and
    new columns of tables that existed, as ``table.column``. A table is new when every
    column it has came with this load."""
    new_tables: dict[str, int] = {}
    new_columns: set[str] = set()
    for package in load_info.load_packages:
        for table_name, table in package.schema_update.items():
            if table_name.startswith("_dlt"):
                continue
            added = {column for column in table.get("columns", {}) if not column.startswith("_dlt")}
            known = schema.get_table_columns(table_name) if table_name in schema.tables else added
            columns = {column for column in known if not column.startswith("_dlt")}
            if columns <= added:
                new_tables[table_name] = len(columns)
            else:
                new_columns |= {f"{table_name}.{column}" for column in added}
    return new_tables, sorted(new_columns)


def _in_chain(exc: BaseException, kind: type[E]) -> E | None:
    """The first ``kind`` in an exception's chain (dlt wraps errors in ``.exception``)."""
    return next((link for link in cause_chain(exc) if isinstance(link, kind)), None)


def source_error_in(exc: BaseException) -> SourceError | None:
    """The ``SourceError`` somewhere in an exception's cause chain, if any."""
    return _in_chain(exc, SourceError)


def contract_error_in(source: str, exc: BaseException) -> SourceError | None:
    """dlt's schema-contract violation (``schema_policy: freeze``) as a ``SourceError``
    naming source, table and column; None if the failure was something else."""
    violation = _in_chain(exc, DataValidationError)
    if violation is None:
        return None
    return SourceError(
        f"{source} source: table `{violation.table_name}`, column `{violation.column_name}` "
        f"violates the schema policy ({violation.schema_entity}: {violation.contract_mode}); "
        f"see `sources.{source}.schema_policy`."
    )


def missing_settings_error(source: str, exc: ConfigFieldMissingException) -> SourceError:
    """dlt's multi-page lookup report as one line naming the settings to set."""
    names = ", ".join(f"SOURCES__{source.upper()}__{field.upper()}" for field in exc.traces)
    return SourceError(
        f"source {source}: missing setting(s) {names} "
        f"(environment, or [sources.{source}] in .dlt/secrets.toml)"
    )


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: the source did not answer or said 'try again later', or the warehouse
    was busy (a lock held by another writer, a rate limit, a dropped connection)."""
    error = source_error_in(exc)
    if isinstance(error, SourceUnreachable):
        return True
    if error is not None:
        return isinstance(error, ApiError) and error.transient
    return _in_chain(exc, DestinationTransientException) is not None or any(
        _WAREHOUSE_BUSY.search(str(link)) for link in cause_chain(exc)
    )


def _retry_only_transient(task: Any, task_run: Any, state: Any) -> bool:
    try:
        state.result()
    except Exception as exc:
        return is_transient(exc)
    return False


@task(
    name="ingest",
    task_run_name="ingest-{source}",
    retries=2,
    retry_delay_seconds=[5, 30],
    retry_jitter_factor=0.5,
    retry_condition_fn=_retry_only_transient,
    cache_policy=NO_CACHE,
)
def ingest(source: str, settings: Settings) -> IngestResult:
    """Load one source into ``raw_<source>``; retried only on transient errors.

    Callers tag the task run with ``source_tag(source)`` so that loads of a source never overlap.
    """
    progress.source_started(source)
    result = run_source(source, settings)
    progress.source_loaded(source, result.total_rows)
    return result


def ingest_sources(sources: Sequence[str], settings: Settings, run_id: str) -> list[IngestResult]:
    """Load ``sources`` in parallel, record every load in the audit table, then fail if one failed.

    Each load is an ``ingest`` task: transient errors are retried after 1, 2, 4 … times
    ``ELT_RETRY_DELAY_SECONDS`` (±50 % jitter), permanent ones fail at once; the source's tag
    keeps two runs of it from overlapping. Every load finishes before the first failure is
    raised, so the audit table holds each source's outcome.
    """
    load = ingest.with_options(
        retries=settings.ingest_retries,
        retry_delay_seconds=exponential_backoff(backoff_factor=settings.retry_delay_s),
    )
    started_at = now()
    futures = {
        source: load.with_options(tags={source_tag(source)}).submit(source, settings) for source in sources
    }
    results: list[IngestResult] = []
    failures: list[tuple[str, BaseException]] = []
    records: list[LoadRecord] = []
    for source, future in futures.items():
        future.wait()
        outcome = future.state.result(raise_on_failure=False)
        if isinstance(outcome, IngestResult):
            results.append(outcome)
            records += [
                LoadRecord(
                    run_id,
                    source,
                    outcome.dataset,
                    table,
                    outcome.rows.get(table, 0),
                    outcome.started_at or started_at,
                    outcome.finished_at or now(),
                    LOADED,
                )
                for table in outcome.tables or [None]
            ]
        else:
            error = outcome if isinstance(outcome, BaseException) else RuntimeError(str(future.state.message))
            failures.append((source, error))
            records.append(
                LoadRecord(
                    run_id,
                    source,
                    raw_dataset(source, settings),
                    None,
                    0,
                    started_at,
                    now(),
                    FAILED,
                    first_line(error),
                )
            )
    if (lineage := current_lineage()) is not None:
        lineage.loads(results, {source: first_line(error) for source, error in failures}, started_at)
    try:
        record(settings, "loads", records)
    except Exception:
        # a warehouse that refused the loads refuses their audit rows too: report the cause
        if not failures:
            raise
    if failures:
        source, error = failures[0]
        if source_error_in(error) is not None or isinstance(error, ConfigError):
            raise error  # it names its source, or the warehouse setting to fix
        raise IngestFailed(f"source {source}: {first_line(error)}") from error
    return results


def source_tag(source: str) -> str:
    """The task-run tag of everything that touches ``raw_<source>`` (its load, its raw gate).

    ``elt deploy`` gives each tag a one-slot Prefect concurrency limit: a second run of the
    source waits, before its task starts, until the first one's task has finished. With no
    limit (``elt run`` on a laptop) the tag is only a label.
    """
    return f"source:{source}"
