"""The SQL that finds a person's rows in a place of the map, in each warehouse's spelling.

One condition per place: an identifier column equal to one of the person's values (an
email compared lower-cased and trimmed, a JSON field's text, a number as text), or a JSON
column holding one of them as a string (``"cus_123"`` inside an event's payload, the way
the load path's guard reads it), or, in the audit trail's free text, any mention.
Values are always bound as parameters, never written into the SQL: warehouses keep
query text in their history.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from dlt_sources.common.privacy import SubjectColumn, TombstoneGuard, Tombstones
from dlt_sources.registry import SOURCES
from flows.audit import DATASET, schema_columns
from flows.config import Settings
from flows.pipelines import warehouse_pipeline
from flows.privacy.places import AUDIT, REJECTED, Place
from flows.privacy.subjects import Identifiers

_CASE_INSENSITIVE = frozenset({"email"})
_JSON_TYPES = frozenset({"json", "variant", "object", "array"})


class WarehouseFinds:
    """Conditions and expressions for the configured warehouse."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.warehouse = settings.warehouse

    def table(self, place: Place) -> str:
        return self.warehouse.quoted_table(self.settings, place.schema, place.table)

    def identifier_columns(self, place: Place) -> list[tuple[str, str]]:
        """(kind, SQL of the normalised value) of each identifier column of ``place``."""
        return [(subject.kind, self._value(place, subject)) for subject in place.subjects()]

    def where(self, place: Place, found: Identifiers) -> tuple[str, list[Any]]:
        """The condition matching the person's rows, and its parameters ('' when none can match)."""
        clauses: list[str] = []
        parameters: list[Any] = []
        for subject in place.subjects():
            values = sorted(found.get(subject.kind, ()))
            if values:
                clauses.append(f"{self._value(place, subject)} in ({', '.join(['%s'] * len(values))})")
                parameters += values
        for name in place.mentions():
            column = place.column(name)
            assert column is not None  # mentions() lists present columns only
            text = self.warehouse.text_sql(self.warehouse.quoted_column(column), place.columns[column])
            for kind, values in sorted(found.items()):
                lowered = f"lower({text})" if kind in _CASE_INSENSITIVE else text
                for value in sorted(values):
                    clause, parameter = self._mention(place, column, lowered, value)
                    if clause:
                        clauses.append(clause)
                        parameters.append(parameter)
        return " or ".join(f"({clause})" for clause in clauses), parameters

    def _mention(self, place: Place, column: str, text: str, value: str) -> tuple[str, str]:
        if place.kind == AUDIT:
            # free text: any mention, but a bare number would match every count in a message
            return ("", "") if value.isdigit() else (self.warehouse.contains_sql(text), value)
        if place.columns[column].lower() in _JSON_TYPES:
            return self.warehouse.contains_sql(text), f'"{value}"'
        return f"{text} = %s", value

    def _value(self, place: Place, subject: SubjectColumn) -> str:
        column = place.column(subject.column)
        assert column is not None
        quoted = self.warehouse.quoted_column(column)
        if subject.json_field:
            text = self.warehouse.json_field_sql(quoted, subject.json_field)
        else:
            text = self.warehouse.text_sql(quoted, place.columns[column])
        return f"lower(trim({text}))" if subject.kind in _CASE_INSENSITIVE else f"trim({text})"


class WarehouseSession:
    """One warehouse connection for a whole erasure (dlt's SQL client, parameters as ``%s``)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def rows(self, sql: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in self.client.execute_sql(sql, *parameters) or []]

    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> None:
        self.client.execute_sql(sql, *parameters)


@contextmanager
def warehouse_session(settings: Settings) -> Iterator[WarehouseSession]:
    with warehouse_pipeline(settings, DATASET, DATASET).sql_client() as client:
        yield WarehouseSession(client)


def catalog(settings: Settings, session: WarehouseSession) -> list[tuple[str, str, str, str]]:
    """Every table's columns, in every schema of the warehouse (every environment's)."""
    schemas = {str(row[0]).lower() for row in session.rows(settings.warehouse.schemas_sql(settings))}
    return schema_columns(settings, schemas, session.rows)


def person_where(
    session: WarehouseSession, finds: WarehouseFinds, place: Place, found: Identifiers, tombstones: Tombstones
) -> tuple[str, list[Any]]:
    """The condition on ``place`` matching the person's rows ('' when none can match).

    Rejected records carry no row id and keep the record as JSON text: they are read whole
    and judged the way the load path's guard judges them (the record's table's identifier
    columns, then any string in it); the condition names their texts.
    """
    if place.kind != REJECTED:
        return finds.where(place, found)
    table_name, record = (
        finds.warehouse.quoted_column(place.column(name) or name) for name in ("table_name", "record")
    )
    guard = TombstoneGuard(SOURCES[place.owner].privacy, tombstones, kinds=found)
    texts = sorted(
        {
            text
            for table, text in session.rows(f"select {table_name}, {record} from {finds.table(place)}")
            if guard.rejected_row_forgotten({"table_name": table, "record": text})
        }
    )
    return (f"{record} in ({', '.join(['%s'] * len(texts))})", texts) if texts else ("", [])
