"""Ingest stage: one dlt pipeline per source, each run as its own Prefect task.

Each source loads the dataset ``raw_<source>``. dlt keeps the cursors in the
pipeline state, which it stores in the warehouse next to the data, so a retry on
a fresh worker with an empty disk restores it from there and resumes.
Transient failures (a source that does not answer, HTTP 429/5xx) are retried;
everything else (bad settings, rejected credentials) fails at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import dlt

# Imported up front, in the main thread: dlt imports pyarrow lazily, and two ingest
# tasks importing it at once in their threads see a half-initialised module.
import pyarrow  # noqa: F401
from dlt.common.configuration.exceptions import ConfigFieldMissingException
from dlt.common.schema.exceptions import DataValidationError
from dlt.pipeline.exceptions import PipelineStepFailed
from prefect import task
from prefect.cache_policies import NO_CACHE

from dlt_sources.common.http import ApiError
from dlt_sources.common.packages import discard_committed_extracts
from dlt_sources.errors import SourceError, SourceUnreachable
from dlt_sources.github import github_source
from dlt_sources.rest import declared_sources
from dlt_sources.shop import shop_after_load, shop_source
from dlt_sources.shop.settings import TABLES as SHOP_TABLES
from dlt_sources.sql_database import declared_databases
from dlt_sources.stripe import stripe_source
from flows.config import LOADER_FILE_FORMAT, Settings

# Source name -> factory of the dlt source. The name is also the dataset suffix
# (raw_<name>), the staging folder in transform/ and the folder in checks/raw/.
# Declarative REST sources (one YAML per API in dlt_sources/rest/) and SQL databases
# (one YAML per database in dlt_sources/sql_database/) come first, so a YAML can never
# shadow a Python source of the same name.
SOURCES: dict[str, Callable[[], Any]] = {
    **declared_sources(),
    **declared_databases(),
    "shop": shop_source,
    "stripe": stripe_source,
    "github": github_source,
}

# Work a source does once its load is committed: CDC applies TRUNCATEs there and reports
# slot lag. Returns an object with ``notes`` and ``warnings`` (lists of lines for the report).
AFTER_LOAD: dict[str, Callable[[dlt.Pipeline], Any]] = {
    "shop": shop_after_load,
}
# Sources replicated through Postgres CDC, with their tables (for the `elt cdc` commands).
CDC_TABLES: dict[str, tuple[str, ...]] = {"shop": SHOP_TABLES}


E = TypeVar("E", bound=BaseException)


@dataclass
class IngestResult:
    """What one source's pipeline loaded in this run."""

    source: str
    dataset: str
    rows: dict[str, int] = field(default_factory=dict)
    duration_s: float = 0.0
    load_ids: list[str] = field(default_factory=list)
    schema_changes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())


def dataset_name(source: str) -> str:
    return f"raw_{source}"


def unknown_sources(names: list[str]) -> list[str]:
    return [name for name in names if name not in SOURCES]


def pipeline_for(source: str, settings: Settings) -> dlt.Pipeline:
    """The dlt pipeline of one source; its local folder is only a cache of warehouse state."""
    return dlt.pipeline(
        pipeline_name=f"elt_{source}",
        destination=settings.dlt_destination(),
        dataset_name=dataset_name(source),
        pipelines_dir=str(settings.pipelines_dir),
    )


def run_source(source: str, settings: Settings) -> IngestResult:
    """Extract, normalize and load one source; no Prefect here so tests can call it."""
    if source not in SOURCES:
        raise SourceError(f"unknown source {source!r}; known sources: {', '.join(SOURCES)}")
    started = time.perf_counter()
    pipeline = pipeline_for(source, settings)
    discard_committed_extracts(pipeline)  # a worker killed mid-normalize must not block the next run
    try:
        load_info = pipeline.run(SOURCES[source](), loader_file_format=LOADER_FILE_FORMAT)
    except ConfigFieldMissingException as exc:
        raise missing_settings_error(source, exc) from None
    except PipelineStepFailed as exc:
        # dlt wraps the source's own error; surface it so the message names the source.
        cause = source_error_in(exc) or contract_error_in(source, exc)
        if cause is not None:
            raise cause from exc
        raise
    load_info.raise_on_failed_jobs()
    after_load = AFTER_LOAD[source](pipeline) if source in AFTER_LOAD else None
    normalized = pipeline.last_trace.last_normalize_info
    rows = {
        table: count
        for table, count in (normalized.row_counts if normalized else {}).items()
        if not table.startswith("_dlt")
    }
    return IngestResult(
        source=source,
        dataset=dataset_name(source),
        rows=rows,
        duration_s=time.perf_counter() - started,
        load_ids=list(load_info.loads_ids),
        schema_changes=_schema_changes(load_info),
        notes=list(after_load.notes) if after_load else [],
        warnings=list(after_load.warnings) if after_load else [],
    )


def _schema_changes(load_info: Any) -> list[str]:
    """New tables and columns this load added to the raw schema, as ``table.column``."""
    changes: list[str] = []
    for package in load_info.load_packages:
        for table_name, table in package.schema_update.items():
            if table_name.startswith("_dlt"):
                continue
            changes.extend(
                f"{table_name}.{column}"
                for column in table.get("columns", {})
                if not column.startswith("_dlt")
            )
    return sorted(set(changes))


def _in_chain(exc: BaseException, kind: type[E]) -> E | None:
    """The first ``kind`` in an exception's chain (dlt wraps errors in ``.exception``)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return current
        seen.add(id(current))
        current = getattr(current, "exception", None) or current.__cause__ or current.__context__
    return None


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
    """Worth retrying: the source did not answer, or answered 'try again later'."""
    error = source_error_in(exc)
    if isinstance(error, SourceUnreachable):
        return True
    return isinstance(error, ApiError) and error.transient


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
    """Load one source into ``raw_<source>``; retried only on transient errors."""
    return run_source(source, settings)
