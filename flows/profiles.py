"""Profiles of the tables a run changed, kept with their history in ``elt_audit.profiles``.

Per column: null fraction, approximate distinct count, min and max, mean and standard
deviation for numbers, length statistics for text, and the top values of a column with
few distinct values; per table its row count. The anomaly detection (flows/anomalies.py)
reads the history. Cost is bounded: one aggregate query per table, over a sample of
``ELT_PROFILE_SAMPLE_ROWS`` rows (default 100,000) when the table is larger, and a
top-values query only for the low-cardinality columns; every query through one
warehouse connection.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flows.audit import DATASET, ProfileRecord, now
from flows.config import Settings
from flows.pipelines import warehouse_pipeline
from flows.setting_values import int_setting

TOP_VALUES = 5
# a column with at most this many distinct values gets its top values profiled
LOW_CARDINALITY = 20

_NUMBER = re.compile(r"int|double|float|decimal|numeric|number|real|bignum", re.IGNORECASE)
_TEXT = re.compile(r"char|text|string", re.IGNORECASE)
_TIME = re.compile(r"timestamp|date|time", re.IGNORECASE)
_BOOL = re.compile(r"bool", re.IGNORECASE)


@dataclass(frozen=True)
class ProfiledTable:
    """A table to profile: (schema, table) as the warehouse names them."""

    schema: str
    table: str


def profile_tables(settings: Settings, tables: Sequence[ProfiledTable], run_id: str) -> list[ProfileRecord]:
    """Profile ``tables``: the records for ``elt_audit.profiles`` (the run writes them with
    its other observations, flows/observe.py)."""
    if not tables:
        return []
    sample_rows = int_setting("ELT_PROFILE_SAMPLE_ROWS", 100_000)
    profiled_at = now()
    records: list[ProfileRecord] = []
    pipeline = warehouse_pipeline(settings, DATASET, DATASET)
    with pipeline.sql_client() as client:
        quote = client.capabilities.escape_identifier
        columns = _columns(client, settings, {table.schema for table in tables})
        for table in tables:
            found = columns.get((table.schema.lower(), table.table.lower()))
            if found:
                run = _TableProfile(settings, client.execute_sql, quote, table, found, sample_rows)
                records += run.records(run_id, profiled_at)
    return records


def _columns(
    client: Any, settings: Settings, schemas: set[str]
) -> dict[tuple[str, str], list[tuple[str, str]]]:
    """(schema, table) → [(column, type)] of every table in ``schemas``, dlt's columns left out."""
    found: dict[tuple[str, str], list[tuple[str, str]]] = {}
    listed = ", ".join(f"'{schema.lower()}'" for schema in sorted(schemas))
    for info in dict.fromkeys(settings.warehouse.information_schema(settings, s) for s in sorted(schemas)):
        rows = client.execute_sql(
            f"select table_schema, table_name, column_name, data_type from {info}.columns"
            f" where lower(table_schema) in ({listed}) order by table_schema, table_name, ordinal_position"
        )
        for schema, table, column, kind in rows or []:
            if not column.startswith("_dlt"):
                found.setdefault((schema.lower(), table.lower()), []).append((column, kind))
    return found


class _TableProfile:
    """The queries profiling one table and their answers as records."""

    def __init__(
        self,
        settings: Settings,
        execute: Callable[[str], Any],
        quote: Callable[[str], str],
        table: ProfiledTable,
        columns: list[tuple[str, str]],
        sample_rows: int,
    ) -> None:
        self.settings, self.execute, self.quote = settings, execute, quote
        self.table, self.columns, self.sample_rows = table, columns, sample_rows
        self.qualified = f"{quote(table.schema)}.{quote(table.table)}"

    def records(self, run_id: str, at: datetime) -> list[ProfileRecord]:
        total = int(self.execute(f"select count(*) from {self.qualified}")[0][0])
        source = self.qualified
        if total > self.sample_rows:
            source = self.settings.warehouse.sample_sql(self.qualified, self.sample_rows, total)
        sampled = min(total, self.sample_rows)

        def record(column: str | None, metric: str, value: Any, detail: str | None = None) -> ProfileRecord:
            number = None if value is None else float(value)
            return ProfileRecord(
                run_id,
                self.table.schema,
                self.table.table,
                column,
                metric,
                number,
                detail,
                total,
                sampled,
                at,
            )

        out = [record(None, "row_count", total)]
        if total == 0:
            return out
        expressions, names = [], []
        for column, kind in self.columns:
            for metric, expression in self._metrics(column, kind):
                expressions.append(expression)
                names.append((column, metric))
        values = self.execute(f"select count(*), {', '.join(expressions)} from {source} as t")[0]
        counted = int(values[0]) or 1
        low_cardinality = []
        for (column, metric), value in zip(names, values[1:], strict=True):
            if metric == "non_null":
                out.append(record(column, "null_fraction", 1 - float(value or 0) / counted))
                continue
            out.append(record(column, metric, value))
            if metric == "distinct_count" and value is not None and 0 < value <= LOW_CARDINALITY:
                low_cardinality.append(column)
        for column in low_cardinality:
            out.append(record(column, "top_values", None, self._top_values(column, source)))
        return out

    def _metrics(self, column: str, kind: str) -> list[tuple[str, str]]:
        c = f"t.{self.quote(column)}"
        metrics = [("non_null", f"count({c})")]
        if _BOOL.search(kind):
            return [*metrics, ("mean", f"avg(case when {c} then 1.0 when not {c} then 0.0 end)")]
        if not (_NUMBER.search(kind) or _TEXT.search(kind) or _TIME.search(kind)):
            return metrics  # JSON, structs, arrays: only how often they are missing
        metrics.append(("distinct_count", f"approx_count_distinct({c})"))
        if _NUMBER.search(kind):
            as_double = f"cast({c} as {self.settings.warehouse.float_type})"
            metrics += [
                ("min", f"min({as_double})"),
                ("max", f"max({as_double})"),
                ("mean", f"avg({as_double})"),
                ("stddev", f"stddev_samp({as_double})"),
            ]
        elif _TEXT.search(kind):
            metrics += [
                ("min_length", f"min(length({c}))"),
                ("max_length", f"max(length({c}))"),
                ("mean_length", f"avg(length({c}))"),
            ]
        return metrics

    def _top_values(self, column: str, source: str) -> str:
        value = f"cast({self.quote(column)} as {self.settings.warehouse.text_type})"
        rows = self.execute(
            f"select {value} as value, count(*) as n from {source} as t"
            f" group by 1 order by n desc, value limit {TOP_VALUES}"
        )
        return json.dumps([[value, int(n)] for value, n in rows or []])
