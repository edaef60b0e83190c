"""Exact column types: what to select, which Arrow type to hand dlt, which hint to declare.

Why: the fast drivers change some types (ADBC returns numeric as text and uuid as
16 bytes, connectorx returns every decimal as decimal128(38,10)). The table's own
types, reflected once through SQLAlchemy, decide instead: ``numeric(p,s)`` becomes
``decimal128(p,s)`` and DECIMAL(p,s), json/jsonb and arrays become JSON text with the
``json`` hint, uuid/enum/interval and types no driver maps exactly are selected as text,
timestamps keep (or lack) their time zone. A value that does not fit its column's type
(NaN in a decimal, a timestamp outside years 1-9999, a null key, an oversized string) is
quarantined into ``_rejected_records`` or fails the run naming source, table, column and
the row's primary key, per ``sources.<name>.bad_records`` (common/rejects.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from dlt_sources.common.rejects import CastFlags, Quarantine
from dlt_sources.errors import SourceError

MAX_DECIMAL_PRECISION = 38  # decimal128, and DuckDB's widest DECIMAL
# Numeric columns declared without precision (PostgreSQL's bare `numeric`): dlt's default.
UNCONSTRAINED_DECIMAL = (38, 9)


@dataclass(frozen=True)
class ColumnPlan:
    """One selected column: its SQL expression, the Arrow type it must end as, its dlt hint."""

    name: str
    expression: sa.ColumnElement[Any]
    arrow_type: pa.DataType | None  # None: keep what the driver returns
    hint: dict[str, Any] = field(default_factory=dict)
    type_name: str = ""


def _quoted(name: str) -> sa.ColumnClause[Any]:
    return sa.column(name, is_literal=False)


def plan_column(name: str, sql_type: Any, nullable: bool, json_text: bool = False) -> ColumnPlan:
    """How one reflected column is read. ``json_text``: a text column known to hold JSON
    (MariaDB's JSON is LONGTEXT with a ``json_valid`` check)."""
    column = _quoted(name)
    hint: dict[str, Any] = {"nullable": nullable}
    type_name = str(sql_type) if not isinstance(sql_type, sa.types.NullType) else "unknown"
    # CAST(… AS VARCHAR) on PostgreSQL, CAST(… AS CHAR) on MySQL: the database's own text form
    as_text = sa.cast(column, sa.String).label(name)

    if isinstance(sql_type, sa.Float):
        return ColumnPlan(name, column.label(name), pa.float64(), {**hint, "data_type": "double"}, type_name)
    if isinstance(sql_type, sa.Numeric):
        precision, scale = sql_type.precision, sql_type.scale or 0
        if precision is None or precision > MAX_DECIMAL_PRECISION:
            precision, scale = UNCONSTRAINED_DECIMAL
        decimal = {"data_type": "decimal", "precision": precision, "scale": scale}
        # as text, then cast in Arrow: exact, and a value that does not fit fails naming its row
        # (connectorx's own decimal128(38,10) panics on values with more digits)
        return ColumnPlan(name, as_text, pa.decimal128(precision, scale), hint | decimal, type_name)
    if isinstance(sql_type, sa.JSON) or json_text:
        return ColumnPlan(name, as_text, pa.string(), {**hint, "data_type": "json"}, type_name)
    if isinstance(sql_type, sa.ARRAY):
        expression = sa.cast(sa.func.to_json(column), sa.Text).label(name)
        return ColumnPlan(name, expression, pa.string(), {**hint, "data_type": "json"}, type_name)
    if isinstance(sql_type, sa.DateTime):
        aware = bool(sql_type.timezone)
        arrow = pa.timestamp("us", tz="UTC") if aware else pa.timestamp("us")
        return ColumnPlan(
            name, column.label(name), arrow, {**hint, "data_type": "timestamp", "timezone": aware}, type_name
        )
    if isinstance(sql_type, sa.Date):
        return ColumnPlan(name, column.label(name), pa.date32(), {**hint, "data_type": "date"}, type_name)
    if isinstance(sql_type, sa.Boolean):
        return ColumnPlan(name, column.label(name), pa.bool_(), {**hint, "data_type": "bool"}, type_name)
    if isinstance(sql_type, sa.Integer):
        return ColumnPlan(name, column.label(name), pa.int64(), {**hint, "data_type": "bigint"}, type_name)
    if isinstance(sql_type, sa.LargeBinary):
        return ColumnPlan(name, column.label(name), pa.binary(), {**hint, "data_type": "binary"}, type_name)
    if isinstance(sql_type, sa.Time):
        return ColumnPlan(name, column.label(name), pa.time64("us"), {**hint, "data_type": "time"}, type_name)
    if isinstance(sql_type, sa.String) and not isinstance(sql_type, sa.Enum | postgresql.ENUM):
        return ColumnPlan(name, column.label(name), pa.string(), {**hint, "data_type": "text"}, type_name)
    # uuid, enums, intervals, network types, anything a driver would hand over as bytes:
    # the database's own text form is exact and portable.
    return ColumnPlan(name, as_text, pa.string(), {**hint, "data_type": "text"}, type_name)


def plan_columns(
    reflected: Sequence[dict[str, Any]], excluded: Sequence[str], json_columns: frozenset[str] = frozenset()
) -> list[ColumnPlan]:
    """Plans for every reflected column except the excluded ones, in table order."""
    skip = set(excluded)
    return [
        plan_column(
            column["name"], column["type"], bool(column.get("nullable", True)), column["name"] in json_columns
        )
        for column in reflected
        if column["name"] not in skip
    ]


def _plain(array: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """The storage of an extension array (ADBC's opaque numeric, arrow.json, arrow.uuid)."""
    if isinstance(array.type, pa.ExtensionType):
        if isinstance(array, pa.ChunkedArray):
            return pa.chunked_array([chunk.storage for chunk in array.chunks], array.type.storage_type)
        return array.storage
    return array


class ConversionError(SourceError):
    """A value does not fit its column's type; names source, table, column and row."""


@dataclass(frozen=True)
class Conformer:
    """Casts each batch a driver returns to the planned Arrow types, then screens it.

    With a ``quarantine`` in quarantine mode a value that does not cast is set aside with
    its row; without one (or in fail mode) the first such value fails the run.
    """

    source: str
    table: str
    plans: tuple[ColumnPlan, ...]
    primary_key: tuple[str, ...]
    quarantine: Quarantine | None = None

    def __call__(self, batch: pa.RecordBatch | pa.Table) -> pa.Table:
        table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
        columns: list[pa.ChunkedArray] = []
        fields: list[pa.Field] = []
        quarantine = self.quarantine
        flags = CastFlags() if quarantine is not None and quarantine.mode == "quarantine" else None
        for plan in self.plans:
            values = _plain(table.column(plan.name))
            if plan.arrow_type is not None and values.type != plan.arrow_type:
                values = self._cast(table, plan, values, flags)
            # NOT NULL columns stay non-nullable in Arrow (the drivers mark every field
            # nullable): dlt's incremental otherwise filters each batch twice for NULL
            # cursors, copying every column (~1.4 s of 5M rows, measured by bench/sql.py)
            nullable = plan.hint.get("nullable", True)
            if not nullable and values.null_count:
                raise self._null_error(table, plan, values)
            columns.append(values)
            fields.append(pa.field(plan.name, values.type, nullable=nullable))
        conformed = pa.Table.from_arrays(columns, schema=pa.schema(fields))
        if quarantine is None:
            return conformed
        if flags is not None:
            conformed = flags.attach(conformed)
        return quarantine.screen(self.table, conformed, self.primary_key)

    def _row_key(self, table: pa.Table, index: int) -> str:
        return ", ".join(f"{k}={table.column(k)[index].as_py()!r}" for k in self.primary_key)

    def _null_error(self, table: pa.Table, plan: ColumnPlan, values: pa.ChunkedArray) -> ConversionError:
        index = pc.index(pc.is_null(values), True).as_py()
        return ConversionError(
            f"source {self.source}: table `{self.table}`, column `{plan.name}` ({plan.type_name}) "
            f"is declared NOT NULL but the driver returned NULL (row {self._row_key(table, index)})"
        )

    def _cast(
        self, table: pa.Table, plan: ColumnPlan, values: pa.ChunkedArray, flags: CastFlags | None = None
    ) -> pa.ChunkedArray:
        target = plan.arrow_type
        if (
            pa.types.is_timestamp(values.type)
            and pa.types.is_timestamp(target)
            and values.type.tz != target.tz
        ):
            # a driver that reports naive UTC for an aware column, or the other way round
            values = pc.assume_timezone(values, "UTC") if target.tz else pc.local_timestamp(values)
            if values.type == target:
                return values
        try:
            if flags is not None:
                return flags.cast(plan.name, values, target)
            return values.cast(target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OverflowError):
            raise self._first_bad_value(table, plan, values) from None

    def _first_bad_value(self, table: pa.Table, plan: ColumnPlan, values: pa.ChunkedArray) -> ConversionError:
        """Find the row that fails (only on the error path, so row by row is fine)."""
        flat = values.combine_chunks()
        for index in range(len(flat)):
            try:
                flat.slice(index, 1).cast(plan.arrow_type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OverflowError):
                return ConversionError(
                    f"source {self.source}: table `{self.table}`, column `{plan.name}` ({plan.type_name}): "
                    f"value {flat[index].as_py()!r} cannot be stored as {plan.arrow_type} "
                    f"(row {self._row_key(table, index)})"
                )
        return ConversionError(
            f"source {self.source}: table `{self.table}`, column `{plan.name}` ({plan.type_name}): "
            f"values of type {values.type} cannot be stored as {plan.arrow_type}"
        )
