"""Malformed records: quarantined next to the good ones, or the run fails naming them.

Why one module: every source meets the same bad inputs (a missing or null primary key, an
oversized string, invalid UTF-8, a timestamp no warehouse can hold, a number out of its
column's range) and each must get the same outcome everywhere. The per-source setting
``sources.<name>.bad_records`` decides:

- ``quarantine`` (default): the record goes to ``_rejected_records`` in the source's own
  dataset (source, table, field, reason, key, the record's first 2 kB) in the same dlt
  load as the good records, so both commit together; the good records still load and no
  row already in the warehouse is touched;
- ``fail``: the run fails with a :class:`RecordRejected` naming source, table, row and field.

A field that changed type is not a bad record: ``schema_policy`` handles it (see
schema_policy.py). Checks on Arrow are vectorised and cost almost nothing when nothing is
wrong: Arrow keeps null counts, a string column whose bytes total less than the limit holds
no oversized value, a temporal column costs one min/max. Casts are tried whole first; only a
failing cast looks for its failing rows (by bisection). Never imports Prefect.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, ClassVar

import dlt
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from dlt.extract.items_transform import ItemTransform

from dlt_sources.errors import SourceError

TABLE = "_rejected_records"
MODES = ("quarantine", "fail")
DEFAULT_MODE = "quarantine"
MAX_STRING_BYTES = 16 * 1024 * 1024
"""Snowflake's VARCHAR limit, the smallest of the three warehouses' (BigQuery: 10 MB per
cell in a load job is checked by BigQuery itself; DuckDB has no practical limit)."""
RECORD_BYTES = 2048
"""How much of a rejected record is kept (its JSON text)."""

# What DuckDB, Snowflake and BigQuery can all hold: years 1 to 9999.
TIMESTAMP_MIN = datetime(1, 1, 1, tzinfo=UTC)
TIMESTAMP_MAX = datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)
DATE_MIN, DATE_MAX = date(1, 1, 1), date(9999, 12, 31)
EPOCH_MIN, EPOCH_MAX = int(TIMESTAMP_MIN.timestamp()), int(TIMESTAMP_MAX.timestamp())
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
# How drivers (ADBC) hand over PostgreSQL's 'infinity' and '-infinity': the storage extremes.
_SENTINELS = {
    INT64_MAX: "infinity",
    INT64_MIN: "-infinity",
    (1 << 31) - 1: "infinity",
    -(1 << 31): "-infinity",
}
# ADBC adds the 2000-01-01 offset to PostgreSQL's own infinities, wrapping around.
_PG_EPOCH_US, _PG_EPOCH_DAYS = 946_684_800_000_000, 10_957
_SENTINELS |= {
    INT64_MAX + _PG_EPOCH_US - (1 << 64): "infinity",
    INT64_MIN + _PG_EPOCH_US: "-infinity",
    (1 << 31) - 1 + _PG_EPOCH_DAYS - (1 << 32): "infinity",
    -(1 << 31) + _PG_EPOCH_DAYS: "-infinity",
}

# reasons (stable codes: tests, contracts and people filter on them)
NULL_KEY = "null_key"
DUPLICATE_KEY = "duplicate_key"
OVERSIZED_STRING = "oversized_string"
INVALID_UTF8 = "invalid_utf8"
TIMESTAMP_OUT_OF_RANGE = "timestamp_out_of_range"
NUMBER_OUT_OF_RANGE = "number_out_of_range"
UNREPRESENTABLE = "unrepresentable_value"

COLUMNS: dict[str, dict[str, Any]] = {
    "source": {"data_type": "text", "nullable": False},
    "table_name": {"data_type": "text", "nullable": False},
    "field": {"data_type": "text"},
    "reason": {"data_type": "text", "nullable": False},
    "detail": {"data_type": "text"},
    "record_key": {"data_type": "text"},
    "record": {"data_type": "text"},
    "rejected_at": {"data_type": "timestamp", "nullable": False},
    "load_id": {"data_type": "text"},
}
SCHEMA = pa.schema(
    [
        pa.field(name, pa.timestamp("us", tz="UTC") if name == "rejected_at" else pa.string())
        for name in COLUMNS
    ]
)

_FLAG_PREFIX = "__rejected_value__"
_MARKER = b"elt_rejected_records"
_CAST_ERRORS = (pa.ArrowInvalid, OverflowError)


class RecordRejected(SourceError):
    """A record cannot be loaded faithfully and ``bad_records`` is ``fail``."""


def check_mode(source: str, mode: str | None) -> str:
    """The validated ``bad_records`` setting (None: the default)."""
    value = (mode or DEFAULT_MODE).strip().lower()
    if value not in MODES:
        raise SourceError(
            f"source {source}: `sources.{source}.bad_records` is {mode!r}; choose one of {', '.join(MODES)}"
        )
    return value


def configured(source: str, mode: str | None = None, max_string_bytes: int | None = None) -> Quarantine:
    """A quarantine from explicit values, else ``sources.<source>.bad_records`` / ``.max_string_bytes``."""
    if mode is None:
        mode = dlt.config.get(f"sources.{source}.bad_records")
    if max_string_bytes is None:
        max_string_bytes = dlt.config.get(f"sources.{source}.max_string_bytes")
    return Quarantine(source, mode, int(max_string_bytes or MAX_STRING_BYTES))


def tolerant_loads(content: bytes) -> Any:
    """orjson, and for a body it refuses, Python's parser keeping bad text as surrogates.

    Why: orjson rejects a whole page for one lone ``\\ud800`` escape or one invalid UTF-8
    byte; this way the page is read and only the records holding such text are rejected
    (their strings cannot be encoded, which ``screen_records`` detects). A body that is not
    JSON at all still raises orjson's error (retried like a truncated body).
    """
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError as error:
        try:
            return json.loads(content.decode("utf-8", "surrogateescape"))
        except ValueError:
            raise error from None


# --------------------------------------------------------------------------- casts
def _reason_for(target: pa.DataType) -> str:
    if pa.types.is_temporal(target):
        return TIMESTAMP_OUT_OF_RANGE
    if pa.types.is_decimal(target) or pa.types.is_integer(target) or pa.types.is_floating(target):
        return NUMBER_OUT_OF_RANGE
    return UNREPRESENTABLE


def _failing_rows(values: pa.Array, target: pa.DataType, offset: int = 0) -> list[int]:
    """Rows whose value does not cast, by bisection: O(bad * log n) casts, error path only."""
    try:
        values.cast(target)
        return []
    except _CAST_ERRORS:
        if len(values) == 1:
            return [offset]
    half = len(values) // 2
    return _failing_rows(values.slice(0, half), target, offset) + _failing_rows(
        values.slice(half), target, offset + half
    )


class CastFlags:
    """Casts that null the values they cannot convert and remember them for :meth:`Quarantine.screen`.

    The fast path is one whole-column cast; the flagged originals travel with the table
    as hidden columns (``attach``) so whoever screens the table can name value and row.
    """

    def __init__(self) -> None:
        self.flagged: list[tuple[str, pa.Array, pa.DataType]] = []

    def cast(self, name: str, values: pa.Array | pa.ChunkedArray, target: pa.DataType) -> Any:
        try:
            return values.cast(target)
        except _CAST_ERRORS:
            pass
        flat = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
        bad = np.zeros(len(flat), dtype=bool)
        bad[_failing_rows(flat, target)] = True
        mask = pa.array(bad)
        self.flagged.append((name, pc.if_else(mask, flat, pa.scalar(None, flat.type)), target))
        return pc.if_else(mask, pa.scalar(None, flat.type), flat).cast(target)

    def attach(self, table: pa.Table) -> pa.Table:
        for name, originals, target in self.flagged:
            meta = {b"reason": _reason_for(target).encode(), b"target": str(target).encode()}
            table = table.append_column(
                pa.field(_FLAG_PREFIX + name, originals.type, metadata=meta), originals
            )
        self.flagged = []
        return table


def strip_flags(table: pa.Table) -> pa.Table:
    """The table without the hidden columns of :class:`CastFlags`."""
    hidden = [name for name in table.column_names if name.startswith(_FLAG_PREFIX)]
    return table.drop_columns(hidden) if hidden else table


# --------------------------------------------------------------------------- screening
@dataclass
class _Problem:
    field: str
    reason: str
    mask: Any  # boolean Array / ChunkedArray over the table's rows
    detail: Callable[[int], str]


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return str(value)


def _key_text(value: Any) -> str:
    """A key value as Arrow rows show it: plain text (bad characters escaped), else JSON."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return record_text(value)


def _cell(column: pa.ChunkedArray, row: int) -> Any:
    """A value for a message or a record: bytes for text that may not be UTF-8, never raising."""
    chunk = column.slice(row, 1).combine_chunks()
    if pa.types.is_string(chunk.type) or pa.types.is_large_string(chunk.type):
        chunk = chunk.cast(pa.large_binary())
    if pa.types.is_timestamp(chunk.type) or pa.types.is_date(chunk.type):
        try:
            return chunk.to_pylist()[0]
        except (ValueError, OverflowError):
            raw = chunk.cast(pa.int32() if pa.types.is_date32(chunk.type) else pa.int64())[0].as_py()
            return _SENTINELS.get(raw, f"{raw} ({chunk.type} units since 1970)")
    try:
        return chunk.to_pylist()[0]
    except (ValueError, OverflowError):
        return str(chunk[0])


def _record_json(table: pa.Table, row: int) -> str:
    """The row as JSON, each text value cut to RECORD_BYTES, the whole cut to RECORD_BYTES."""
    record = {}
    for name in table.column_names:
        value = _cell(table.column(name), row)
        if isinstance(value, bytes):
            value = value[:RECORD_BYTES].decode("utf-8", "backslashreplace")
        elif isinstance(value, str):
            value = value[:RECORD_BYTES]
        record[name] = value
    return record_text(record)


def record_text(record: Any) -> str:
    """A record as JSON text of at most RECORD_BYTES (surrogates escaped, never raising)."""
    text = json.dumps(record, ensure_ascii=True, default=str)
    return text[:RECORD_BYTES]


def _temporal_bounds(type_: pa.DataType) -> tuple[int, int] | None:
    """The allowed range of a timestamp/date column as its int64 storage values."""
    if pa.types.is_timestamp(type_):
        scale = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}[type_.unit]
        if type_.unit == "ns":  # ns cannot reach the bounds at all
            return None
        return EPOCH_MIN * scale, (EPOCH_MAX + 1) * scale - 1
    if pa.types.is_date32(type_):
        epoch = date(1970, 1, 1)
        return (DATE_MIN - epoch).days, (DATE_MAX - epoch).days
    if pa.types.is_date64(type_):
        return EPOCH_MIN * 1000, (EPOCH_MAX + 1) * 1000 - 1
    return None


class Quarantine:
    """One run of one source's resource: screens its batches, collects what it rejects.

    Thread-safe: readers in background threads screen their batches; the resource's own
    generator yields :meth:`item` (the rejected rows for ``_rejected_records``) at its end.
    """

    def __init__(
        self, source: str, mode: str | None = None, max_string_bytes: int = MAX_STRING_BYTES
    ) -> None:
        self.source = source
        self.mode = check_mode(source, mode)
        if max_string_bytes <= 0:
            raise SourceError(f"source {source}: `sources.{source}.max_string_bytes` must be positive")
        self.max_string_bytes = max_string_bytes
        self._rows: list[dict[str, Any]] = []
        self._pending: dict[bytes, pa.Table] = {}
        self._like: pa.Schema | None = None  # the resource's own columns, for item()'s stand-in
        self._lock = threading.Lock()
        self.rejected = 0

    # -- Arrow: the fast path of every source ------------------------------------------
    def screen(
        self,
        table: str,
        data: pa.Table,
        key: Sequence[str] = (),
        *,
        epoch_seconds: Iterable[str] = (),
    ) -> pa.Table:
        """``data`` without its bad rows (recorded, or raised in ``fail`` mode)."""
        problems = self._problems(data, key, set(epoch_seconds))
        data = strip_flags(data)
        self._like = data.schema
        if not problems:
            return data
        bad = np.zeros(data.num_rows, dtype=bool)
        found: list[tuple[int, _Problem]] = []
        for problem in problems:
            mask = np.asarray(pc.fill_null(problem.mask, False).to_numpy(zero_copy_only=False), dtype=bool)
            rows = np.flatnonzero(mask & ~bad)
            bad |= mask
            found.extend((int(row), problem) for row in rows)
        if not found:
            return data
        found.sort(key=lambda item: item[0])
        for row, problem in found:
            self._add(
                table,
                problem.field,
                problem.reason,
                problem.detail(row),
                self._key(data, key, row),
                data,
                row,
            )
        return data.filter(pa.array(~bad))

    def _problems(self, data: pa.Table, key: Sequence[str], epochs: set[str]) -> list[_Problem]:
        problems: list[_Problem] = []
        for field in data.schema:
            if not field.name.startswith(_FLAG_PREFIX):
                continue
            originals = data.column(field.name)
            meta = field.metadata or {}
            target = meta.get(b"target", b"?").decode()
            problems.append(
                _Problem(
                    field.name.removeprefix(_FLAG_PREFIX),
                    meta.get(b"reason", UNREPRESENTABLE.encode()).decode(),
                    pc.is_valid(originals),
                    lambda row, o=originals, t=target: (
                        f"value {_text(_cell(o, row))!r} cannot be stored as {t}"
                    ),
                )
            )
        for name in key:
            if name not in data.column_names:
                problems.append(
                    _Problem(
                        name, NULL_KEY, pa.array(np.ones(data.num_rows, dtype=bool)), lambda row: "missing"
                    )
                )
            elif data.column(name).null_count:
                problems.append(
                    _Problem(name, NULL_KEY, pc.is_null(data.column(name)), lambda row: "primary key is null")
                )
        limit = self.max_string_bytes
        for field in data.schema:
            name, type_ = field.name, field.type
            if name.startswith(_FLAG_PREFIX):
                continue
            column = data.column(name)
            if _is_text(type_):
                if column.nbytes > limit:  # else no single value can exceed the limit
                    lengths = pc.binary_length(column)
                    mask = pc.greater(lengths, limit)
                    if pc.any(mask).as_py():
                        problems.append(
                            _Problem(
                                name,
                                OVERSIZED_STRING,
                                mask,
                                lambda row, n=lengths: (
                                    f"{n[row].as_py():,} bytes, over max_string_bytes={limit:,}"
                                ),
                            )
                        )
                continue
            bounds = _temporal_bounds(type_)
            if bounds is None and name in epochs and pa.types.is_integer(type_):
                bounds = (EPOCH_MIN, EPOCH_MAX)
            if bounds is None or column.null_count == len(column):
                continue
            storage = column.cast(pa.int32() if pa.types.is_date32(type_) else pa.int64())
            extremes = pc.min_max(storage)
            low, high = extremes["min"].as_py(), extremes["max"].as_py()
            if low >= bounds[0] and high <= bounds[1]:
                continue
            mask = pc.or_(pc.less(storage, bounds[0]), pc.greater(storage, bounds[1]))
            problems.append(
                _Problem(
                    name,
                    TIMESTAMP_OUT_OF_RANGE,
                    pc.fill_null(mask, False),
                    lambda row, c=column: f"{_text(_cell(c, row))} is outside years 0001-9999",
                )
            )
        return problems

    @staticmethod
    def _key(data: pa.Table, key: Sequence[str], row: int) -> str | None:
        present = [name for name in key if name in data.column_names]
        if not present or all(data.column(name)[row].as_py() is None for name in present):
            return None
        return ", ".join(f"{name}={_text(_cell(data.column(name), row))}" for name in present)

    # -- JSON records: the slow path of API sources --------------------------------------
    def screen_records(
        self,
        table: str,
        records: Sequence[dict[str, Any]],
        key: Sequence[str] = (),
        int_columns: Collection[str] = (),
    ) -> list[dict[str, Any]]:
        """Records whose values Arrow can hold: strings that encode as UTF-8, integers in int64.

        Python per record, so only for a page whose Arrow conversion failed. ``int_columns``
        are declared integers: a float there beyond int64 is a too-large integer orjson read.
        """
        kept = []
        for record in records:
            problem = _record_problem(record, int_columns)
            if problem is None:
                kept.append(record)
                continue
            field, reason, detail = problem
            values = [record.get(name) for name in key]
            record_key = (
                None
                if all(value is None for value in values)
                else ", ".join(f"{name}={_key_text(value)}" for name, value in zip(key, values, strict=True))
            )
            self._add_record(table, field, reason, detail, record_key, record_text(record))
        return kept

    # -- bookkeeping ----------------------------------------------------------------------
    def _add(
        self, table: str, field: str, reason: str, detail: str, key: str | None, data: pa.Table, row: int
    ) -> None:
        if self.mode == "fail":
            self._raise(table, field, reason, detail, key)
        self._add_record(table, field, reason, detail, key, _record_json(data, row))

    def _add_record(
        self, table: str, field: str | None, reason: str, detail: str, key: str | None, record: str | None
    ) -> None:
        if self.mode == "fail":
            self._raise(table, field, reason, detail, key)
        row = {
            "source": self.source,
            "table_name": table,
            "field": field,
            "reason": reason,
            "detail": detail[:RECORD_BYTES],
            "record_key": key,
            "record": record,
            "rejected_at": datetime.now(UTC),
            "load_id": None,
        }
        with self._lock:
            self._rows.append(row)
            self.rejected += 1

    def reject(
        self, table: str, field: str | None, reason: str, detail: str, key: str | None, record: Any = None
    ) -> None:
        """Record (or, in ``fail`` mode, raise) one problem found outside :meth:`screen`."""
        self._add_record(table, field, reason, detail, key, None if record is None else record_text(record))

    def _raise(self, table: str, field: str | None, reason: str, detail: str, key: str | None) -> None:
        raise RecordRejected(
            f"source {self.source}: table `{table}`, row {key or '(no key)'}, field `{field}`: {reason} "
            f"({detail}); `sources.{self.source}.bad_records` is fail. Fix the record at the source, or set "
            f"it to quarantine to load the other records and keep this one in raw_{self.source}.{TABLE}."
        )

    def take(self) -> pa.Table | None:
        """The rejected rows so far (then forgotten), or None."""
        with self._lock:
            rows, self._rows = self._rows, []
        if not rows:
            return None
        load_id = _current_load_id()
        for row in rows:
            row["load_id"] = load_id
        return pa.Table.from_pylist(rows, schema=SCHEMA)

    def item(self) -> Any | None:
        """The rejected rows so far as the resource's last item, for ``_rejected_records``, or None.

        Why a stand-in: dlt's incremental step filters every item of a resource on its
        cursor column, which these rows lack. The resource yields an empty table (which the
        incremental passes through untouched; it has the resource's own columns, whose key
        and cursor the incremental looks for) and the step :meth:`attach_to` added after the
        incremental swaps in the rows, keeping the hints that route them to the table.
        """
        rows = self.take()
        if rows is None:
            return None
        token = str(id(rows)).encode()
        with self._lock:
            self._pending[token] = rows
        like = self._like if self._like is not None else SCHEMA
        marker = pa.Table.from_pylist([], schema=like.with_metadata({_MARKER: token}))
        hints = dlt.mark.make_hints(table_name=TABLE, write_disposition="append", columns=COLUMNS)
        return dlt.mark.with_hints(marker, hints, create_table_variant=True)

    def attach_to(self, resource: Any) -> Any:
        """Add the step that puts the rejected rows in place of :meth:`item`'s stand-in, and
        declare ``_rejected_records`` as a table of the resource with its own hints only.

        Why declared here: a table variant starts as a copy of the resource's hints, so it
        would inherit the data table's columns, primary key and merge; cleared now, the rows
        land in an append-only table with just the rejects' columns.
        """
        resource.apply_hints(
            table_name=TABLE,
            write_disposition="append",
            columns={},
            primary_key=[],
            merge_key=[],
            additional_table_hints={},
            create_table_variant=True,
        )
        return resource.add_step(_SwapInRejects(self))

    def _swap(self, item: Any) -> Any:
        if isinstance(item, pa.Table) and not item.num_rows and item.schema.metadata:
            token = item.schema.metadata.get(_MARKER)
            if token is not None:
                with self._lock:
                    return self._pending.pop(token, None)
        return item


class _SwapInRejects(ItemTransform[Any, Any]):
    """Replaces :meth:`Quarantine.item`'s empty stand-in by the rejected rows."""

    placement_affinity: ClassVar[float] = 1.5  # after dlt's incremental (1), before forks (2)

    def __init__(self, quarantine: Quarantine) -> None:
        super().__init__(lambda item: item)
        self.quarantine = quarantine

    def __call__(self, item: Any, meta: Any = None) -> Any:
        return self.quarantine._swap(item)


def _current_load_id() -> str | None:
    try:
        return str(dlt.current.load_package()["load_id"])
    except Exception:  # outside a pipeline's extract step (unit tests)
        return None


def _is_text(type_: pa.DataType) -> bool:
    return (
        pa.types.is_string(type_)
        or pa.types.is_large_string(type_)
        or pa.types.is_binary(type_)
        or pa.types.is_large_binary(type_)
    )


def _record_problem(record: Mapping[str, Any], int_columns: Collection[str]) -> tuple[str, str, str] | None:
    """The first value of a decoded JSON record that Arrow cannot hold faithfully."""
    for name, value in record.items():
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return name, INVALID_UTF8, f"text {record_text(value)[:200]} is not valid UTF-8"
        elif isinstance(value, bool):
            continue
        elif isinstance(value, int):
            if not INT64_MIN <= value <= INT64_MAX:
                return name, NUMBER_OUT_OF_RANGE, f"{value} is outside the 64-bit integer range"
        elif isinstance(value, float) and name in int_columns:
            # orjson reads an integer beyond 64 bits as a float: it is no longer exact
            if value.is_integer() and not INT64_MIN <= value <= INT64_MAX:
                return name, NUMBER_OUT_OF_RANGE, f"{value!r} is outside the 64-bit integer range"
        elif isinstance(value, dict | list):
            try:
                orjson.dumps(value)
            except (TypeError, orjson.JSONEncodeError) as error:
                if "Integer" in str(error):
                    return name, NUMBER_OUT_OF_RANGE, "nested value holds an integer beyond 64 bits"
                return name, INVALID_UTF8, "nested value holds text that is not valid UTF-8"
    return None
