"""``elt privacy export``: everything the platform holds about a person, as one JSON document.

The right of access: every row of the person in every place of the map that stores rows
(raw tables and their dlt staging copies, rejected records, snapshot history, the marts
where dbt builds them, the published and quarantined marts, the audit trail's text), found
the way ``forget`` would find them, with the identifiers linked to the one asked for.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from dlt_sources.common.privacy import Tombstones
from flows.audit import now
from flows.config import Settings
from flows.privacy.matching import (
    WarehouseFinds,
    catalog,
    person_where,
    warehouse_session,
)
from flows.privacy.places import privacy_map
from flows.privacy.subjects import Subject, linked_identifiers
from flows.privacy.tombstones import hashes_of, tombstone_key
from flows.transform import parse_project


def export(settings: Settings, subject: Subject) -> dict[str, Any]:
    """The document: the subject, their linked identifiers, and per table its rows of them."""
    project = parse_project(quiet=True)
    finds = WarehouseFinds(settings)
    held = []
    with warehouse_session(settings) as session:
        places = [p for p in privacy_map(catalog(settings, session), project.contents) if p.stores_rows]
        found = linked_identifiers({subject.kind: {subject.value}}, places, session.rows, finds)
        key = tombstone_key(settings)
        forgotten = Tombstones(key, frozenset(hashes_of(key, found)))
        for place in places:
            columns = list(place.columns)
            where, parameters = person_where(session, finds, place, found, forgotten)
            if not where:
                continue
            quoted = ", ".join(map(finds.warehouse.quoted_column, columns))
            rows = session.rows(f"select {quoted} from {finds.table(place)} where {where}", parameters)
            if rows:
                records = [{c: _json_value(v) for c, v in zip(columns, row, strict=True)} for row in rows]
                held.append(
                    {"table": place.name, "kind": place.kind, "written_by": place.owner, "rows": records}
                )
    return {
        "subject": f"{subject.kind}:{subject.value}",
        "identifiers": {kind: sorted(values) for kind, values in sorted(found.items())},
        "exported_at": now().isoformat(),
        "warehouse": settings.warehouse.name,
        "tables": held,
    }


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    return value
