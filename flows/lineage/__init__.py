"""Lineage of every run, in the OpenLineage standard, from the source's field to the mart column.

One :class:`RunLineage` per flow run (``flows/observe.py`` opens it): the stages hand it
what they did (``loads``, ``contracts``, ``dbt_build``, ``publish``) and return at once;
the events are built and sent on a background thread (``emitter.py``), so lineage costs
the run's stages almost nothing. The warehouse is read and written only from the run's own
thread (a second DuckDB connection with another configuration is refused): the stored
lineage once at the start, the columns of what dbt built and published right after, the
new lineage in the run's one write of its observations at the end. Column lineage of a
dbt node comes from its compiled SQL
(``columns.py``), worked out once per compiled-SQL hash and kept in the warehouse
(``store.py``), which ``elt lineage`` walks. Jobs: ``dlt.<source>.<table>``,
``dbt.<unique id>``, ``soda.<schema>.<table>``, ``publish.<mart>``, each with the Prefect
flow run as its parent.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from functools import partial
from typing import Any

from dlt_sources.common.lineage import Origin
from dlt_sources.registry import SOURCES
from flows.audit import query_warehouse, schema_columns
from flows.config import Settings
from flows.lineage import store
from flows.lineage.dbt_results import built_nodes, parents_of, relations_of, timing_of
from flows.lineage.emitter import Emitter, lineage_settings, make_transports
from flows.lineage.model import Checked, FieldSource, JobRun, Output, Parent, Table
from flows.redact import first_line
from flows.results import ContractResult, IngestResult

_CURRENT: ContextVar[RunLineage | None] = ContextVar("elt_run_lineage", default=None)


def current() -> RunLineage | None:
    """The lineage of the flow run in progress; None outside one (a test calling a stage)."""
    return _CURRENT.get()


@contextmanager
def run_lineage(settings: Settings, flow_name: str, run_id: str) -> Iterator[RunLineage]:
    """Collect and send this run's lineage; on the way out wait for the sending (bounded)."""
    lineage = RunLineage(settings, flow_name, run_id)
    token = _CURRENT.set(lineage)
    try:
        yield lineage
    finally:
        _CURRENT.reset(token)
        lineage.close()


class RunLineage:
    """What one flow run read and wrote, as OpenLineage events and stored column lineage."""

    def __init__(self, settings: Settings, flow_name: str, run_id: str) -> None:
        self.settings = settings
        job_namespace = os.environ.get("ELT_LINEAGE_NAMESPACE") or "elt"
        parent_run = run_id if _is_uuid(run_id) else str(uuid.uuid4())
        self.parent = Parent(job_namespace, flow_name, parent_run)
        self.namespace = settings.warehouse.lineage_namespace(settings)
        self.database = (settings.catalog or settings.duckdb_path.stem).lower()
        self.emitter = Emitter(make_transports(lineage_settings()))
        # table-level edges of this run, in order: the run report's diagram
        self.edges: list[tuple[str, str, str]] = []
        self._new: dict[store.Key, tuple[str, str, Mapping[str, Sequence[FieldSource]]]] = {}
        self.failures: list[str] = []
        self._closed = False
        self._stored: dict[store.Key, store.DatasetLineage] | None = None

    # ----------------------------------------------------------------- what the stages report
    def loads(self, results: Sequence[IngestResult], failed: Mapping[str, str], started: datetime) -> None:
        """The loads of this run: one job per source table, a FAIL per source that failed."""
        if results:
            self.read_stored()
        self.emitter.submit(lambda: self._loads(list(results), dict(failed), started))

    def contracts(self, results: Sequence[ContractResult]) -> None:
        self.emitter.submit(lambda: self._contracts(list(results)))

    def dbt_build(self, run_results: Mapping[str, Any], manifest: Mapping[str, Any]) -> None:
        """dbt's run results (with each node's compiled SQL) and the manifest they were built from."""
        built = built_nodes(run_results, manifest)
        if not built:
            return
        self.read_stored()
        relations = relations_of(manifest)
        schemas = {relations[r["unique_id"]][0] for r in built}
        schemas |= {relations[p][0] for r in built for p in parents_of(r, manifest, relations)}
        catalog = self._read("the built tables' columns", lambda: self._catalog(schemas), {})
        self.emitter.submit(lambda: self._dbt(built, manifest, relations, catalog))

    def publish(self, marts: Sequence[str], audit_schema: str, schema: str, started: datetime) -> None:
        finished = _now()
        self.read_stored()
        catalog = self._read(
            "the published tables' columns", lambda: self._catalog({audit_schema, schema}), {}
        )
        self.emitter.submit(
            lambda: self._publish(list(marts), audit_schema, schema, catalog, started, finished)
        )

    def read_stored(self) -> None:
        """The stored column lineage, read once, when a stage first needs it (a run that fails
        before it loads anything never connects for it)."""
        if self._stored is None:
            self._stored = self._read("the stored column lineage", lambda: store.latest(self.settings), {})

    def _read(self, what: str, read: Any, otherwise: Any) -> Any:
        """A warehouse read the lineage needs; one that fails costs only lineage detail, never the run."""
        try:
            return read()
        except Exception as exc:
            self.emitter.failures.append(f"lineage: could not read {what}: {first_line(exc)}")
            return otherwise

    def close(self) -> list[store.LineageRow]:
        """Wait for the events to be sent (bounded); the column lineage that changed, as rows
        of ``elt_audit.column_lineage`` for the run's one audit write (flows/observe.py)."""
        if not self._closed:
            self._closed = True
            self.failures = self.emitter.close()
        return store.rows(self._new, _now())

    # ----------------------------------------------------------------- the report's diagram
    def mermaid(self) -> str:
        """This run's table-level lineage as a Mermaid flowchart (empty when nothing ran)."""
        if not self.edges:
            return ""
        ids: dict[str, str] = {}

        def node(name: str) -> str:
            if name not in ids:
                ids[name] = f"n{len(ids)}"
            return f'{ids[name]}["{name}"]'

        lines = ["flowchart LR"]
        lines += [
            f"  {node(source)} -->|{job}| {node(target)}" for source, job, target in dict.fromkeys(self.edges)
        ]
        return "\n".join(lines)

    # ----------------------------------------------------------------- the background work
    def _table(self, schema: str, table: str, columns: Mapping[str, str] | None = None) -> Table:
        """A warehouse table, named in lower case: Snowflake answers in upper case, dbt and the
        flows name tables in lower case, and one table must have one name."""
        return Table(self.namespace, f"{self.database}.{schema}.{table}".lower(), columns)

    def _edge(self, source: Table, job: str, target: Table) -> None:
        self.edges.append((_short(source, self.namespace), job, _short(target, self.namespace)))

    def _cached(
        self, key: store.Key, source_hash: str, job: str, compute: Any
    ) -> Mapping[str, Sequence[FieldSource]]:
        """A dataset's column lineage: the stored one if computed from the same source, else
        computed now (and stored at the end of the run)."""
        known = self._stored if self._stored is not None else {}  # read before the work was submitted
        stored = known.get(key)
        if stored is not None and stored.source_hash == source_hash:
            return stored.columns
        columns = compute()
        self._new[key] = (job, source_hash, columns)
        known[key] = store.DatasetLineage(source_hash, columns)
        return columns

    def _loads(self, results: list[IngestResult], failed: dict[str, str], started: datetime) -> None:
        runs: list[JobRun] = []
        for result in results:
            origin = _origin(result.source)
            for table in result.tables:
                columns = result.columns.get(table, {})
                target = self._table(result.dataset, table, columns)
                source = Table(origin.namespace, origin.name_of(table))
                job = f"dlt.{result.source}.{table}"
                fields = self._cached(
                    (target.namespace, target.name),
                    _digest(source.namespace, source.name, sorted(columns)),
                    job,
                    lambda source=source, columns=columns: {
                        column: [FieldSource(source.namespace, source.name, column)]
                        for column in columns
                        if not column.startswith("_dlt")
                    },
                )
                output = Output(target, fields, result.rows.get(table, 0), result.loaded_bytes.get(table))
                run = JobRun(
                    job, "LOAD", "DLT", result.started_at or started, result.finished_at or _now(),
                    [source], [output],
                )  # fmt: skip
                runs.append(run)
                self._edge(source, job, target)
        for source_name, error in failed.items():
            runs.append(JobRun(f"dlt.{source_name}", "LOAD", "DLT", started, _now(), error=error))
        self._send(runs)

    def _contracts(self, results: list[ContractResult]) -> None:
        runs: list[JobRun] = []
        finished = _now()
        for result in results:
            schema, _, table = result.dataset.rpartition(".")
            checked = Checked(
                self._table(schema, table), [(check.label, check.ok, check.column) for check in result.checks]
            )
            started = datetime.fromtimestamp(finished.timestamp() - result.duration_s, UTC)
            run = JobRun(
                f"soda.{result.dataset}", "TEST", "SODA", started, finished, [checked],
                error=None if result.passed else result.failure_message() or result.error,
            )  # fmt: skip
            runs.append(run)
        self._send(runs)

    def _dbt(
        self,
        built: list[Mapping[str, Any]],
        manifest: Mapping[str, Any],
        relations: Mapping[str, tuple[str, str]],
        catalog: Mapping[str, Any],
    ) -> None:
        nodes = manifest.get("nodes", {})
        dialect = self.settings.warehouse.name
        runs: list[JobRun] = []
        for result in built:
            uid = result["unique_id"]
            node = nodes[uid]
            schema, name = relations[uid]
            parents = parents_of(result, manifest, relations)
            inputs = [
                self._table(*relations[p], _columns(catalog, self.database, *relations[p])) for p in parents
            ]
            target = self._table(schema, name, _columns(catalog, self.database, schema, name))
            sql = result.get("compiled_code") or ""
            job = f"dbt.{uid}"
            failed = result.get("status") in ("error", "fail", "skipped")
            fields = None
            if sql and not failed:
                upstream = {table.name: dict(table.columns or {}) for table in inputs}
                fields = self._cached(
                    (target.namespace, target.name),
                    _digest(sql, upstream),
                    job,
                    lambda uid=uid, sql=sql: self._column_lineage(uid, sql, catalog, dialect),
                )
            started, finished = timing_of(result)
            run = JobRun(
                job, node["resource_type"].upper(), "DBT", started, finished,
                inputs,
                [] if failed else [Output(target, fields)],
                error=first_line(result.get("message")) if failed else None,
                sql=sql or None,
            )  # fmt: skip
            runs.append(run)
            for table in inputs:
                self._edge(table, job.removeprefix("dbt."), target)
        self._send(runs)

    def _send(self, runs: list[JobRun]) -> None:
        """The runs' START and COMPLETE/FAIL events, built only when there is somewhere to send them."""
        if self.emitter.sends:
            from flows.lineage.events import run_events  # the OpenLineage client, only when sending

            self.emitter.send([event for run in runs for event in run_events(self.parent, run)])

    def _column_lineage(
        self, uid: str, sql: str, catalog: Mapping[str, Any], dialect: str
    ) -> dict[str, list[FieldSource]]:
        from flows.lineage.columns import Kind, LineageUnavailable, column_lineage  # sqlglot, when needed

        try:
            lineage = column_lineage(sql, catalog, dialect)
        except Exception as exc:  # SQL sqlglot cannot read (or a parser bug) costs this node only
            reason = str(exc) if isinstance(exc, LineageUnavailable) else f"{type(exc).__name__}: {exc}"
            self.emitter.failures.append(f"lineage: {uid}: no column lineage ({first_line(reason)})")
            return {}
        return {
            column.lower(): [
                FieldSource(
                    self.namespace,
                    f"{source.catalog or self.database}.{source.schema}.{source.table}".lower(),
                    source.column.lower(),
                    source.kind.value,
                    source.kind is Kind.MASKED,
                )
                for source in sources
            ]
            for column, sources in lineage.items()
        }

    def _publish(
        self,
        marts: list[str],
        audit_schema: str,
        schema: str,
        catalog: Mapping[str, Any],
        started: datetime,
        finished: datetime,
    ) -> None:
        runs: list[JobRun] = []
        for mart in marts:
            columns = _columns(catalog, self.database, schema, mart)
            audited = self._table(audit_schema, mart, columns)
            target = self._table(schema, mart, columns)
            job = f"publish.{mart}"
            fields = self._cached(
                (target.namespace, target.name),
                _digest("publish", audited.name, sorted(columns)),
                job,
                lambda audited=audited, columns=columns: {
                    column: [FieldSource(audited.namespace, audited.name, column)] for column in columns
                },
            )
            run = JobRun(
                job,
                "PUBLISH",
                "ELT",
                started,
                finished,
                [audited],
                [Output(target, fields)],
            )
            runs.append(run)
            self._edge(audited, job, target)
        self._send(runs)

    def _catalog(self, schemas: set[str]) -> dict[str, dict[str, dict[str, dict[str, str]]]]:
        """The columns of every table in ``schemas``, as sqlglot's schema argument takes them."""
        catalog: dict[str, dict[str, dict[str, dict[str, str]]]] = {}
        execute = partial(query_warehouse, self.settings)
        for schema, table, column, kind in schema_columns(self.settings, schemas, execute):
            tables = catalog.setdefault(self.database, {}).setdefault(schema, {})
            tables.setdefault(table, {})[column.lower()] = kind
        return catalog


def _origin(source: str) -> Origin:
    """Where a source's tables come from; a source that does not say is ``dlt://<source>``."""
    spec = SOURCES.get(source)
    if spec is not None and spec.lineage is not None:
        return spec.lineage()
    return Origin(f"dlt://{source}", {})


def _columns(catalog: Mapping[str, Any], database: str, schema: str, table: str) -> dict[str, str]:
    return dict(catalog.get(database, {}).get(schema.lower(), {}).get(table.lower(), {}))


def _digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _short(table: Table, warehouse_namespace: str) -> str:
    """A table as a person names it: ``schema.table`` in the warehouse, else namespace + name."""
    if table.namespace == warehouse_namespace:
        return table.name.split(".", 1)[-1]
    return (
        f"{table.namespace}{table.name}" if table.name.startswith("/") else f"{table.namespace}/{table.name}"
    )


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _now() -> datetime:
    return datetime.now(UTC)
