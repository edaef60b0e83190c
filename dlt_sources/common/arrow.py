"""Turn pages of JSON objects into Arrow tables: the fast path into dlt.

Why: dlt's row-by-row normalizer costs 8 to 40 times a plain loop (see design notes);
resources that yield Arrow tables skip it and go straight to parquet. Nested
objects and lists stay JSON text (declare those columns ``data_type: json`` on
the resource) unless a source maps them to a child table itself.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from itertools import chain
from operator import itemgetter
from typing import Any, ClassVar

import orjson
import pyarrow as pa


def nested_keys(records: Iterable[dict[str, Any]]) -> set[str]:
    """Keys whose value is an object or a list in any record."""
    keys: set[str] = set()
    for record in records:
        for key, value in record.items():
            if isinstance(value, dict | list):
                keys.add(key)
    return keys


def _json_text(values: list[Any]) -> list[bytes | None]:
    """JSON text of each value (None stays a SQL null); bytes, which Arrow takes as utf8."""
    if None in values:
        return [None if value is None else orjson.dumps(value) for value in values]
    return list(map(orjson.dumps, values))


def _is_nested(values: list[Any]) -> bool:
    """Whether the column holds objects or lists (judged by its first non-null value)."""
    first = next((value for value in values if value is not None), None)
    return isinstance(first, dict | list)


def _column(values: list[Any], to_json: bool, type_: pa.DataType | None) -> pa.Array:
    if to_json or (type_ is None and _is_nested(values)):
        return pa.array(_json_text(values), type=type_ or pa.string())
    try:
        return pa.array(values, type=type_)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        # Mixed on the page, e.g. a string on one record and an object on another:
        # as before, a column with any nested value is JSON text throughout.
        if type_ is None and any(isinstance(value, dict | list) for value in values):
            return pa.array(_json_text(values), type=pa.string())
        raise


def _uniform_columns(records: Sequence[dict[str, Any]]) -> dict[str, list[Any]] | None:
    """The values per key when every record has exactly the first record's keys, else None.

    Why: collecting the key union over every record (``dict.fromkeys(chain(...))``) cost
    ~10% of the conversion of a typical page (~0.13 s per million records). If each
    record has all of the first record's k keys (every ``itemgetter`` pass succeeded)
    and the records hold n * k keys in total, no record has another key, so the first
    record's keys are the union.
    """
    first = list(records[0])
    if sum(map(len, records)) != len(records) * len(first):
        return None
    try:
        return {name: list(map(itemgetter(name), records)) for name in first}
    except KeyError:
        return None


def records_to_arrow(
    records: Sequence[dict[str, Any]],
    json_columns: Iterable[str] = (),
    schema: pa.Schema | None = None,
) -> pa.Table:
    """One Arrow table from a page of records; nested values become JSON text.

    ``json_columns`` are always serialised (so a column that is null on one page
    and an object on the next keeps one type); other nested keys found on the
    page are serialised too, so a new nested field arrives as a new column.
    ``schema`` pins the types of known columns (unknown ones are inferred and
    follow in name order).

    Built column by column (one C-level pass per column to pick the values, then
    one Arrow conversion), not row by row: this is the hot loop of every API load.
    """
    if not records:
        return pa.Table.from_pylist([], schema=schema)
    to_json = set(json_columns)
    n = len(records)
    picked = _uniform_columns(records)
    # every key of every record, in order of first appearance (C-speed: no Python loop per row)
    names = list(picked) if picked is not None else list(dict.fromkeys(chain.from_iterable(records)))
    if schema is not None:
        known = set(schema.names)
        columns = [(field.name, field.type) for field in schema]
        columns += [(name, None) for name in sorted(set(names) - known)]
    else:
        columns = [(name, None) for name in names]
    present = set(names)
    arrays = []
    for name, type_ in columns:
        if name not in present:
            arrays.append(pa.nulls(n, type=type_))
            continue
        if picked is not None:
            values = picked[name]
        else:
            try:
                values = list(map(itemgetter(name), records))
            except KeyError:  # not in every record
                values = [record.get(name) for record in records]
        arrays.append(_column(values, name in to_json, type_))
    if schema is None:
        return pa.Table.from_arrays(arrays, names=names)
    # pinned fields keep their nullability and metadata; inferred ones follow
    inferred = zip(columns[len(schema) :], arrays[len(schema) :], strict=True)
    fields = list(schema) + [pa.field(name, array.type) for (name, _), array in inferred]
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata=schema.metadata))


class _ExpectedHintWarning(logging.Filter):
    """Drop dlt's per-batch warning that Arrow and declared column hints differ, for our resources.

    Why: a ``json`` column is JSON text in Arrow (``text`` to dlt) and a declared
    ``nullable: false`` column is nullable in Arrow; dlt keeps the declared hints, which
    is what we want, but says so in a WARNING for every batch of every run.
    """

    resources: ClassVar[set[str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "Staging data is declared as already deduplicated" in message:
            # a cursor's dedup_sort is meant for the runs where a key repeats (see the REST
            # source's _declare_deduplicated); on the others dlt says on every load it is unused
            match = re.search(r' in table "([^"]+)"', message)
            return not (match and match.group(1) in self.resources)
        if "when merging arrow schema with dlt schema" not in message:
            return True
        name = message.removeprefix("In resource: ").split(",", 1)[0]
        return name not in self.resources


_hint_warning_filter = _ExpectedHintWarning()


def quiet_expected_hint_warnings(resources: Iterable[str]) -> None:
    """Silence the expected hint warnings for these resources (names are global to dlt's logger)."""
    _ExpectedHintWarning.resources.update(resources)
    dlt_logger = logging.getLogger("dlt")
    if _hint_warning_filter not in dlt_logger.filters:
        dlt_logger.addFilter(_hint_warning_filter)
