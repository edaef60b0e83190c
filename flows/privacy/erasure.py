"""``elt privacy forget``: erase a person from every place of the map, and keep them out.

The order makes an interrupted erasure safe to run again, and never half-visible:

1. the person's identifiers: the one asked for and those linked to it in the source tables
   and the snapshot (flows/privacy/subjects.py);
2. tombstones (flows/privacy/tombstones.py): from then on every load drops the person;
3. each place that stores rows, in SQL: ``delete`` their rows, or ``redact`` (null the
   personal and identifying columns, keep the amounts) where the table's policy says so;
   the rejected records, JSON text, judged by the load path's own guard;
4. the marts where dbt builds them (``*_marts_audit``) like any other place, then their
   contracts, then ``publish_marts``: consumers see the erased marts all at once, as after
   a run (write-audit-publish). A mart whose contract fails is erased in place instead: an
   erasure never waits on a contract;
5. last, the places that link identifiers (customer tables, snapshot): while anything of
   the person is left elsewhere, they are still there to find it from. A later ``forget``
   finds the identifiers of an erasure that left tombstones but no proof there (by their
   keyed hashes) and completes it;
6. a last count of every place (the proof's "after", which must be 0), and the proof rows
   in ``elt_audit.erasures``: per table, rows before and after, the request, who, when;
   the person only as the keyed hash of the identifier asked for;
7. the warehouse compacted where deleted rows could still be read back (DuckDB's file).

The subject reaches the flow through this process only (``submit``), never as a Prefect
parameter; logs, errors and the report name counts, never values.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from prefect import flow, get_run_logger

from dlt_sources.common.privacy import Tombstones
from flows.audit import now, record
from flows.build_lock import build_lock
from flows.checks import ContractsFailed
from flows.config import ConfigError, Settings, load_settings
from flows.gates import gate
from flows.operations import operator
from flows.privacy.matching import WarehouseFinds, WarehouseSession, catalog, person_where, warehouse_session
from flows.privacy.places import MART, MART_AUDIT, Place, privacy_map
from flows.privacy.subjects import (
    Identifiers,
    Subject,
    describe,
    identifiers_hashed_as,
    linked_identifiers,
    links,
)
from flows.privacy.tombstones import add_tombstones, hashes_of, tombstone_key, unfinished
from flows.redact import first_line, redact
from flows.report import RunSummary
from flows.transform import parse_project, run_dbt_operation

DELETED, REDACTED, NOTHING = "deleted", "redacted", "nothing held"
_REQUESTS: dict[str, Subject] = {}


@dataclass(frozen=True)
class ErasureRecord:
    """One row of ``elt_audit.erasures``: what one request did to one table."""

    request_id: str
    subject_hash: str
    requested_by: str
    requested_at: datetime
    place: str
    place_kind: str
    action: str
    table_rows_before: int
    table_rows_after: int
    subject_rows_before: int
    subject_rows_after: int
    finished_at: datetime


@dataclass
class ErasureReport:
    request_id: str
    identifiers: str = ""
    tombstones_added: int = 0
    records: list[ErasureRecord] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def rows_erased(self) -> int:
        return sum(r.subject_rows_before - r.subject_rows_after for r in self.records)

    @property
    def complete(self) -> bool:
        return all(r.subject_rows_after == 0 for r in self.records)

    @property
    def erased_tables(self) -> list[ErasureRecord]:
        """The tables that held the person (and were erased)."""
        return [r for r in self.records if r.action != NOTHING]


def submit(subject: Subject) -> str:
    """Hand the subject to this process's next ``privacy_forget`` run; its request id."""
    request_id = f"erasure-{uuid.uuid4().hex[:12]}"
    _REQUESTS[request_id] = subject
    return request_id


@flow(name="privacy-forget", log_prints=False)
def privacy_forget(request_id: str, warehouse: str | None = None) -> ErasureReport:
    """Erase the subject handed over with ``submit`` from every place of the PII map."""
    subject = _REQUESTS.pop(request_id, None)
    if subject is None:  # a re-run from the Prefect UI: the person was never a parameter
        raise ConfigError(
            f"{request_id}: only the `elt privacy forget` that started it knows the person; run it again"
        )
    settings = load_settings(warehouse)
    settings.export_tool_environment()
    with build_lock():
        return erase(settings, subject, request_id)


def erase(settings: Settings, subject: Subject, request_id: str) -> ErasureReport:
    """Each step on its own warehouse connection: dbt, Soda and dlt open their own, and DuckDB
    refuses a second connection of another configuration in one process."""
    log = get_run_logger()
    requested_at, requested_by = now(), operator()
    key = tombstone_key(settings)
    report = ErasureReport(request_id)
    project = parse_project(quiet=True)
    finds = WarehouseFinds(settings)
    with warehouse_session(settings) as session:
        places = [p for p in privacy_map(catalog(settings, session), project.contents) if p.stores_rows]
        found = linked_identifiers({subject.kind: {subject.value}}, places, session.rows, finds)
        resumed = identifiers_hashed_as(unfinished(settings), key, places, session.rows, finds)
        if resumed:
            found = linked_identifiers(_merged(found, resumed), places, session.rows, finds)
            report.notes.append(f"also completes an interrupted erasure: {describe(resumed)}")
    report.identifiers = describe(found)
    log.info("request %s: %s, %d places in the map", request_id, report.identifiers, len(places))
    report.tombstones_added = len(add_tombstones(settings, key, found, request_id, requested_at))
    forgotten = Tombstones(key, frozenset(hashes_of(key, found)))
    # this environment's published marts change only by a publish, as after a run; the
    # places linking identifiers go last, so that an interrupted erasure can be resumed
    published = f"{settings.dbt_schema}_marts".lower()
    by_publish = [p for p in places if p.kind == MART and p.schema == published]
    linking = [p for p in places if links(p)]
    with warehouse_session(settings) as session:
        before = _counts(session, finds, places, found, forgotten)
        for place in places:
            if before[place.name][1] and place not in by_publish and place not in linking:
                _erase(session, finds, place, found, forgotten)
    try:
        _publish(settings, project, places, before, report)
    except Exception as exc:  # the contracts or the publish broke: the erasure goes on
        secrets = sorted((v for values in found.values() for v in values), key=len, reverse=True)
        report.notes.append(
            f"publish failed, published marts erased in place: {redact(str(exc), secrets)[:300]}"
        )
    with warehouse_session(settings) as session:
        for place in [*by_publish, *linking]:
            if _counts(session, finds, [place], found, forgotten)[place.name][1]:
                _erase(session, finds, place, found, forgotten)
        after = _counts(session, finds, places, found, forgotten)
    hashed, finished = subject.hashed(key), now()
    for place in places:
        (total_before, hits_before), (total_after, hits_after) = before[place.name], after[place.name]
        action = NOTHING if not hits_before else (DELETED if place.privacy.policy == "delete" else REDACTED)
        report.records.append(
            ErasureRecord(
                request_id, hashed, requested_by, requested_at, place.name, place.kind, action,
                total_before, total_after, hits_before, hits_after, finished,
            )
        )  # fmt: skip
    record(settings, "erasures", report.records)
    _shorten_time_travel(settings, [p for p in places if before[p.name][1]], report)
    settings.warehouse.compact(settings)
    log.info(
        "request %s: %d rows erased in %d tables", request_id, report.rows_erased, len(report.erased_tables)
    )
    return report


def _shorten_time_travel(settings: Settings, touched: list[Place], report: ErasureReport) -> None:
    """The warehouse's old versions of the erased tables kept as briefly as it allows; a
    warehouse (or emulator) that refuses is noted in the report, never a failed erasure."""
    statements = settings.warehouse.retention_sql(settings, [(p.schema, p.table) for p in touched])
    if not statements:
        return
    try:
        with warehouse_session(settings) as session:
            for statement in statements:
                session.execute(statement)
    except Exception as exc:
        report.notes.append(f"time travel not shortened: {first_line(exc)}")


def _merged(first: Identifiers, second: Identifiers) -> Identifiers:
    return {kind: first.get(kind, set()) | second.get(kind, set()) for kind in {*first, *second}}


def _counts(
    session: WarehouseSession,
    finds: WarehouseFinds,
    places: list[Place],
    found: Identifiers,
    forgotten: Tombstones,
) -> dict[str, tuple[int, int]]:
    """(rows in the table, rows of the person) of each place, in as few queries as the
    warehouse's statement size allows: a cloud warehouse answers each query in 0.1-1 s."""
    parts = []
    for index, place in enumerate(places):
        where, parameters = person_where(session, finds, place, found, forgotten)
        hits = f"coalesce(sum(case when {where} then 1 else 0 end), 0)" if where else "0"
        parts.append((f"select {index}, count(*), {hits} from {finds.table(place)}", parameters))
    counted: dict[str, tuple[int, int]] = {}
    for start in range(0, len(parts), _UNION_SIZE):
        batch = parts[start : start + _UNION_SIZE]
        sql = " union all ".join(part for part, _ in batch)
        for index, total, hits in session.rows(sql, [value for _, values in batch for value in values]):
            counted[places[int(index)].name] = (int(total), int(hits))
    return counted


# tables counted per query (one union of that many selects)
_UNION_SIZE = 50


def _erase(
    session: WarehouseSession, finds: WarehouseFinds, place: Place, found: Identifiers, forgotten: Tombstones
) -> None:
    """Delete the person's rows, or null their personal and identifying columns."""
    table = finds.table(place)
    where, parameters = person_where(session, finds, place, found, forgotten)
    if not where:
        return
    if place.privacy.policy == "delete":
        session.execute(f"delete from {table} where {where}", parameters)
        return
    quoted = finds.warehouse.quoted_column
    nulls = ", ".join(f"{quoted(column)} = null" for column in place.redacted())
    session.execute(f"update {table} set {nulls} where {where}", parameters)


def _publish(
    settings: Settings,
    project: Any,
    places: list[Place],
    before: dict[str, tuple[int, int]],
    report: ErasureReport,
) -> None:
    """Check the erased marts of this environment's audit schema, then publish them."""
    audit_schema = f"{settings.dbt_schema}_marts_audit".lower()
    marts = sorted(
        place.table
        for place in places
        if place.kind == MART_AUDIT and place.schema == audit_schema and before[place.name][1]
    )
    if not marts:
        return
    summary = RunSummary(warehouse=settings.warehouse.name)
    try:
        gate(summary, "marts", settings, tables=marts)
    except ContractsFailed as exc:
        raise RuntimeError(f"the contracts of {', '.join(exc.failed_tables) or 'the marts'} failed") from None
    run_dbt_operation("publish_marts", {"tables": marts}, manifest=project.manifest)
    report.notes.append(
        f"published {len(marts)} erased marts after their contracts passed: {', '.join(marts)}"
    )
