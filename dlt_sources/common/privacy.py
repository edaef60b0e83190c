"""Personal data: what a source declares about its tables, and the load path's guard.

A source declares, per table, with dlt column hints (kept in the dlt schema like any other):

- ``x-pii: <category>`` — the column holds personal data (email, name, address, phone, free_text);
- ``x-subject: <kind>`` — its value identifies a person of that kind (``email``,
  ``shop_customer``, ``stripe_customer``); ``x-subject-field: <field>`` when the identifier
  is a field of a JSON column (Stripe's ``metadata.shop_customer_id``);

and the table's erasure policy: ``delete`` (the person's rows go) or ``redact`` (the rows
stay, because a business must keep them, payments for tax law; their personal and
identifying fields become null, the amounts stay). ``mentions`` names JSON or text columns
that may carry any identifier of a person (an event's payload).

The guard: ``elt privacy forget`` leaves a tombstone per identifier of the person, a keyed
hash (HMAC-SHA256 with the platform's own tombstone key, never the clear value). Every
later load passes its batches through :class:`TombstoneGuard`, which hashes the batch's
identifiers (each distinct value once) and drops or redacts the rows of forgotten people
before anything is written, counting them for the run report. Never imports Prefect.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import orjson
import pyarrow as pa
import pyarrow.compute as pc
from dlt.extract.items_transform import ItemTransform

PII_HINT = "x-pii"
SUBJECT_HINT = "x-subject"
SUBJECT_FIELD_HINT = "x-subject-field"
DELETE, REDACT = "delete", "redact"
POLICIES = (DELETE, REDACT)
REJECTED_RECORDS = "_rejected_records"  # dlt_sources/common/rejects.py TABLE: rows of any table, as JSON

# identifiers compared case-insensitively (an email typed in upper case is the same person)
_CASE_INSENSITIVE = frozenset({"email"})
# a JSON text that is not whole (a rejected record is cut at 2 kB): its strings, one by one
_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')


def pii(category: str, subject: str | None = None) -> dict[str, str]:
    """Column hints of a personal-data column, itself an identifier of ``subject`` where given."""
    return {PII_HINT: category} | ({SUBJECT_HINT: subject} if subject else {})


def subject(kind: str, json_field: str | None = None) -> dict[str, str]:
    """Column hints of an identifier of a person of ``kind`` (inside ``json_field`` of a JSON column)."""
    return {SUBJECT_HINT: kind} | ({SUBJECT_FIELD_HINT: json_field} if json_field else {})


@dataclass(frozen=True)
class SubjectColumn:
    """A column (or a field of a JSON column) whose value identifies a person of ``kind``."""

    column: str
    kind: str
    json_field: str | None = None


@dataclass(frozen=True)
class TablePrivacy:
    """Where a table holds people, and what erasing one does to it."""

    policy: str = DELETE
    subjects: tuple[SubjectColumn, ...] = ()
    pii: Mapping[str, str] = field(default_factory=dict)
    mentions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"erasure policy {self.policy!r} is not one of {', '.join(POLICIES)}")

    @classmethod
    def from_hints(
        cls, columns: Mapping[str, Mapping[str, Any]], policy: str = DELETE, mentions: Iterable[str] = ()
    ) -> TablePrivacy:
        """The declaration read off a table's dlt column hints."""
        subjects = tuple(
            SubjectColumn(name, str(hints[SUBJECT_HINT]), hints.get(SUBJECT_FIELD_HINT))
            for name, hints in columns.items()
            if hints.get(SUBJECT_HINT)
        )
        categories = {name: str(hints[PII_HINT]) for name, hints in columns.items() if hints.get(PII_HINT)}
        return cls(policy, subjects, categories, tuple(mentions))

    @property
    def redacted(self) -> tuple[str, ...]:
        """The columns a ``redact`` sets to null: personal data, identifiers, mentions."""
        names = [*self.pii, *(s.column for s in self.subjects), *self.mentions]
        return tuple(dict.fromkeys(names))

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset(s.kind for s in self.subjects)


SourcePrivacy = Mapping[str, TablePrivacy]
"""A source's declaration: table → its privacy (tables holding no person are left out)."""


def normalise(kind: str, value: Any) -> str:
    """The text an identifier is compared and hashed as: ``123`` and ``"123"`` are one customer."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text.lower() if kind in _CASE_INSENSITIVE else text


def keyed_hash(key: bytes, kind: str, value: Any) -> str:
    """HMAC-SHA256 of ``kind:value``: what a tombstone holds instead of the identifier."""
    return hmac.new(key, f"{kind}:{normalise(kind, value)}".encode(), hashlib.sha256).hexdigest()


def json_strings(text: str) -> list[str]:
    """Every string value in a JSON text, whole or cut short (keys and numbers left out: a
    bare number in free JSON, a quantity or an amount, says nothing about who it is)."""
    try:
        values: list[str] = []
        _collect(orjson.loads(text), values)
        return values
    except orjson.JSONDecodeError:  # cut short, or plain text (then itself one string)
        return [text, *(match.group(1) for match in _STRING.finditer(text))]


def _collect(value: Any, into: list[str]) -> None:
    if isinstance(value, dict):
        for item in value.values():
            _collect(item, into)
    elif isinstance(value, list):
        for item in value:
            _collect(item, into)
    elif isinstance(value, str):
        into.append(value)


def json_field(text: Any, name: str) -> Any:
    """``text``'s top-level field ``name`` (None when absent or not JSON)."""
    if isinstance(text, dict):
        return text.get(name)
    try:
        value = orjson.loads(text) if isinstance(text, str | bytes) else None
    except orjson.JSONDecodeError:
        return None
    return value.get(name) if isinstance(value, dict) else None


@dataclass(frozen=True)
class Tombstones:
    """The keyed hashes of every forgotten identifier, and the key that made them."""

    key: bytes
    hashes: frozenset[str]

    def __bool__(self) -> bool:
        return bool(self.hashes)

    def forgotten(self, kind: str, value: Any) -> bool:
        return value is not None and keyed_hash(self.key, kind, value) in self.hashes

    def forgotten_values(self, kind: str, values: Iterable[Any]) -> list[Any]:
        """Those of ``values`` (distinct, as they are) that identify a forgotten person."""
        return [value for value in values if self.forgotten(kind, value)]

    def in_json(self, text: Any, kinds: Iterable[str]) -> bool:
        """Whether a JSON text names a forgotten person of any of ``kinds`` in one of its strings."""
        if text is None:
            return False
        strings = json_strings(text if isinstance(text, str) else orjson.dumps(text).decode())
        return any(self.forgotten(kind, value) for value in set(strings) for kind in kinds)


class TombstoneGuard:
    """Drops or redacts the rows of forgotten people in one source's batches, counting them.

    Added to each resource by the ingest flow (``step``) only when tombstones exist,
    so a platform that never erased anyone pays nothing. Arrow batches are hashed per
    distinct identifier; JSON rows (dicts) one by one. Thread-safe counters.
    """

    def __init__(
        self, privacy: SourcePrivacy, tombstones: Tombstones, kinds: Iterable[str] | None = None
    ) -> None:
        self.privacy = privacy
        self.tombstones = tombstones
        # the kinds of identifier looked for in free JSON: the source's own, unless told
        declared: frozenset[str] = frozenset().union(*(table.kinds for table in privacy.values()))
        self.kinds = declared if kinds is None else frozenset(kinds)
        self.dropped: Counter[str] = Counter()
        self.redacted: Counter[str] = Counter()
        self._lock = threading.Lock()

    def step(self, resource_table: str) -> ItemTransform[Any, Any]:
        """The resource's last step (a batch's own table hint wins over the resource's name)."""
        return _GuardStep(self, resource_table)

    def apply(self, table: str, item: Any) -> Any:
        if table == REJECTED_RECORDS:
            return self._rejected(item)
        declared = self.privacy.get(table)
        if declared is None or not (declared.subjects or declared.mentions):
            return item
        if isinstance(item, pa.Table | pa.RecordBatch):
            return self._arrow(table, declared, item)
        if isinstance(item, list):
            return [row for row in (self._row(table, declared, row) for row in item) if row is not None]
        if isinstance(item, dict):
            return self._row(table, declared, item)
        return item

    # -- Arrow ---------------------------------------------------------------------------
    def _arrow(self, table: str, declared: TablePrivacy, data: pa.Table | pa.RecordBatch) -> Any:
        mask = self._arrow_mask(declared, data)
        if mask is None:
            return data
        hits = int(pc.sum(mask).as_py() or 0)
        if declared.policy == DELETE:
            self._count(self.dropped, table, hits)
            kept = data.filter(pc.invert(mask))
            return kept if kept.num_rows else None  # nothing left to load: no empty load file
        self._count(self.redacted, table, hits)
        for name in declared.redacted:
            if name in data.schema.names:
                index = data.schema.get_field_index(name)
                column = data.column(index)
                nulls = pa.nulls(len(column), column.type)
                data = data.set_column(index, data.schema.field(index), pc.if_else(mask, nulls, column))
        return data

    def _arrow_mask(self, declared: TablePrivacy, data: pa.Table | pa.RecordBatch) -> pa.Array | None:
        mask = None
        names = data.schema.names
        for column in declared.subjects:
            if column.column not in names:
                continue
            values = data.column(column.column)
            if column.json_field is not None:
                hit = pa.array(
                    [
                        self.tombstones.forgotten(column.kind, json_field(v, column.json_field))
                        for v in values.to_pylist()
                    ]
                )
            else:
                forgotten = self.tombstones.forgotten_values(column.kind, pc.unique(values).to_pylist())
                if not forgotten:
                    continue
                hit = pc.fill_null(pc.is_in(values, value_set=pa.array(forgotten, values.type)), False)
            mask = hit if mask is None else pc.or_(mask, hit)
        for name in declared.mentions:
            if name in names:
                hit = pa.array(
                    [self.tombstones.in_json(v, self.kinds) for v in data.column(name).to_pylist()]
                )
                mask = hit if mask is None else pc.or_(mask, hit)
        if mask is None or not pc.any(mask).as_py():
            return None
        return mask

    # -- JSON rows -------------------------------------------------------------------------
    def _row(self, table: str, declared: TablePrivacy, row: dict[str, Any]) -> dict[str, Any] | None:
        if not self._row_forgotten(declared, row):
            return row
        if declared.policy == DELETE:
            self._count(self.dropped, table, 1)
            return None
        self._count(self.redacted, table, 1)
        return row | {name: None for name in declared.redacted if name in row}

    def _row_forgotten(self, declared: TablePrivacy, row: Mapping[str, Any]) -> bool:
        for column in declared.subjects:
            value = row.get(column.column)
            if column.json_field is not None:
                value = json_field(value, column.json_field)
            if self.tombstones.forgotten(column.kind, value):
                return True
        return any(self.tombstones.in_json(row.get(name), self.kinds) for name in declared.mentions)

    # -- rejected records: rows of any table, kept as JSON text ---------------------------------
    def _rejected(self, item: Any) -> Any:
        rows = item.to_pylist() if isinstance(item, pa.Table | pa.RecordBatch) else item
        if not isinstance(rows, list):
            rows = [rows]
        kept = [row for row in rows if not self.rejected_row_forgotten(row)]
        self._count(self.dropped, REJECTED_RECORDS, len(rows) - len(kept))
        if isinstance(item, pa.Table | pa.RecordBatch):
            return pa.Table.from_pylist(kept, schema=item.schema) if len(kept) != len(rows) else item
        return kept if isinstance(item, list) else (kept[0] if kept else None)

    def rejected_row_forgotten(self, row: Mapping[str, Any]) -> bool:
        """A rejected row names a forgotten person in its table's identifiers or in any string."""
        record = row.get("record")
        declared = self.privacy.get(str(row.get("table_name")))
        if declared is not None and isinstance(record, str):
            try:
                values = orjson.loads(record)
            except orjson.JSONDecodeError:
                values = None
            if isinstance(values, dict) and self._row_forgotten(declared, values):
                return True
        return self.tombstones.in_json(record, self.kinds)

    def _count(self, counter: Counter[str], table: str, rows: int) -> None:
        if rows:
            with self._lock:
                counter[table] += rows

    def counts(self) -> dict[str, int]:
        """Rows of forgotten people kept out of the warehouse, per table (dropped or redacted)."""
        return dict(self.dropped + self.redacted)


class _GuardStep(ItemTransform[Any, Any]):
    """The guard as a pipe step placed after dlt's incremental (1) and after the rejected
    records are swapped in (rejects.py, 1.5), so it sees every row a resource yields."""

    placement_affinity: ClassVar[float] = 1.8

    def __init__(self, guard: TombstoneGuard, resource_table: str) -> None:
        super().__init__(lambda item: item)
        self.guard, self.resource_table = guard, resource_table

    def __call__(self, item: Any, meta: Any = None) -> Any:
        return self.guard.apply(_table_of(meta) or self.resource_table, item)


def _table_of(meta: Any) -> str | None:
    """The table a batch is marked for (``dlt.mark.with_hints`` / ``with_table_name``)."""
    name = getattr(meta, "table_name", None)
    if name is None:
        hints = getattr(meta, "hints", None)
        name = hints.get("table_name") if isinstance(hints, dict) else None
    return name if isinstance(name, str) else None
