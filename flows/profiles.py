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

from flows.audit import DATASET, ProfileRecord, now, schema_columns
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
    """A table to profile: (schema, table) as the warehouse names them, and the lower-case
    names of its columns that hold personal data or identify a person (flows/privacy/): of
    those only how often they are missing and how many distinct values, never a value."""

    schema: str
    table: str
    personal: frozenset[str] = frozenset()


def profile_tables(settings: Settings, tables: Sequence[ProfiledTable], run_id: str) -> list[ProfileRecord]:
    """Profile ``tables``: the records for ``elt_audit.profiles`` (the run writes them with
    its other observations, flows/observe.py).

    Three rounds of queries, so a cloud warehouse's per-query latency is paid about once per
    table rather than once per column: every row count in one query, one aggregate query
    per table, every top-values list in one query.
    """
    if not tables:
        return []
    sample_rows = int_setting("ELT_PROFILE_SAMPLE_ROWS", 100_000)
    profiled_at = now()
    pipeline = warehouse_pipeline(settings, DATASET, DATASET)
    with pipeline.sql_client() as client:
        quote = client.capabilities.escape_identifier
        columns = _columns(client, settings, {table.schema for table in tables})
        profiles = [
            _TableProfile(settings, quote, table, found, sample_rows)
            for table in tables
            if (found := columns.get((table.schema.lower(), table.table.lower())))
        ]
        for batch in _batches(profiles):
            counts = client.execute_sql(
                " union all ".join(f"select {i}, count(*) from {p.qualified}" for i, p in enumerate(batch))
            )
            for i, total in counts or []:
                batch[int(i)].total = int(total)
        for profile in profiles:
            if profile.total:
                profile.read_aggregates(client.execute_sql(profile.aggregate_sql())[0])
        wanted = [(profile, column) for profile in profiles for column in profile.low_cardinality]
        for batch in _batches(wanted):
            rows = client.execute_sql(
                " union all ".join(
                    profile.top_values_sql(i, column) for i, (profile, column) in enumerate(batch)
                )
            )
            found_values: dict[int, list[list[Any]]] = {}
            for i, value, n in rows or []:
                found_values.setdefault(int(i), []).append([value, int(n)])
            for i, (profile, column) in enumerate(batch):
                profile.top_values[column] = sorted(
                    found_values.get(i, []), key=lambda vn: (-vn[1], str(vn[0]))
                )
    return [record for profile in profiles for record in profile.records(run_id, profiled_at)]


def _batches(items: Sequence[Any], size: int = 50) -> list[Sequence[Any]]:
    """Queries of at most ``size`` parts: a 1,000-table union would exceed some warehouses' limits."""
    return [items[start : start + size] for start in range(0, len(items), size)]


def _columns(
    client: Any, settings: Settings, schemas: set[str]
) -> dict[tuple[str, str], list[tuple[str, str]]]:
    """(schema, table) → [(column, type)] of every table in ``schemas``, dlt's columns left out."""
    found: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for schema, table, column, kind in schema_columns(settings, schemas, client.execute_sql):
        if not column.startswith("_dlt"):
            found.setdefault((schema, table), []).append((column, kind))
    return found


class _TableProfile:
    """One table's profile: the SQL that measures it and the records its answers become."""

    def __init__(
        self,
        settings: Settings,
        quote: Callable[[str], str],
        table: ProfiledTable,
        columns: list[tuple[str, str]],
        sample_rows: int,
    ) -> None:
        self.settings, self.quote, self.table = settings, quote, table
        self.columns, self.sample_rows = columns, sample_rows
        self.qualified = f"{quote(table.schema)}.{quote(table.table)}"
        self.total = 0
        self.measured: list[tuple[str, str, Any]] = []  # (column, metric, value)
        self.low_cardinality: list[str] = []
        self.top_values: dict[str, list[list[Any]]] = {}
        self._names = [
            (column, metric) for column, kind in columns for metric, _ in self._metrics(column, kind)
        ]

    @property
    def source(self) -> str:
        """The table, or a sample of ``sample_rows`` of it when it is larger."""
        if self.total > self.sample_rows:
            return self.settings.warehouse.sample_sql(self.qualified, self.sample_rows, self.total)
        return self.qualified

    def aggregate_sql(self) -> str:
        expressions = [
            expression for column, kind in self.columns for _, expression in self._metrics(column, kind)
        ]
        return f"select count(*), {', '.join(expressions)} from {self.source} as t"

    def read_aggregates(self, values: Sequence[Any]) -> None:
        counted = int(values[0]) or 1
        for (column, metric), value in zip(self._names, values[1:], strict=True):
            if metric == "non_null":
                self.measured.append((column, "null_fraction", 1 - float(value or 0) / counted))
                continue
            self.measured.append((column, metric, value))
            if (
                metric == "distinct_count"
                and value is not None
                and 0 < value <= LOW_CARDINALITY
                and column.lower() not in self.table.personal
            ):
                self.low_cardinality.append(column)

    def top_values_sql(self, index: int, column: str) -> str:
        value = f"cast(t.{self.quote(column)} as {self.settings.warehouse.text_type})"
        return (
            f"select * from (select {index} as i, {value} as v, count(*) as n from {self.source} as t"
            f" group by 2 order by n desc, v limit {TOP_VALUES}) as q{index}"
        )

    def records(self, run_id: str, at: datetime) -> list[ProfileRecord]:
        sampled = min(self.total, self.sample_rows)

        def record(column: str | None, metric: str, value: Any, detail: str | None = None) -> ProfileRecord:
            number = None if value is None else float(value)
            schema, table = self.table.schema, self.table.table
            return ProfileRecord(
                run_id, schema, table, column, metric, number, detail, self.total, sampled, at
            )

        out = [record(None, "row_count", self.total)]
        out += [record(column, metric, value) for column, metric, value in self.measured]
        out += [
            record(column, "top_values", None, json.dumps(values))
            for column, values in self.top_values.items()
        ]
        return out

    def _metrics(self, column: str, kind: str) -> list[tuple[str, str]]:
        c = f"t.{self.quote(column)}"
        metrics = [("non_null", f"count({c})")]
        if _BOOL.search(kind):
            return [*metrics, ("mean", f"avg(case when {c} then 1.0 when not {c} then 0.0 end)")]
        if not (_NUMBER.search(kind) or _TEXT.search(kind) or _TIME.search(kind)):
            return metrics  # JSON, structs, arrays: only how often they are missing
        metrics.append(("distinct_count", f"approx_count_distinct({c})"))
        if column.lower() in self.table.personal:
            return metrics
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
