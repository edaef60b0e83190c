"""One run's changes to one table, collapsed to the last image per primary key.

Why collapse here rather than leave it to dlt's merge de-duplication: an update
that leaves a TOASTed column unchanged arrives without that value (``UNCHANGED``),
and dlt's merge replaces whole rows, so the value must be filled in before the
row is written. Keeping every key's latest image in arrival (commit) order gives
both at once: the fill comes from the row's previous image in this run, and only
rows whose previous image is in the warehouse are left for a lookup there
(``unresolved``).

Two implementations of those rules: ``ChangeLog`` (what a run uses) keeps the raw
messages and, in the common case, decodes only each key's last one, column by column;
``TableChanges`` decodes every message and applies the fill rules, and ``ChangeLog``
replays through it the messages of the keys that need a fill.

A new Relation message with other columns (ADD/DROP COLUMN) starts a new segment:
each segment becomes its own Arrow table with that segment's columns.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

import numpy as np
import pyarrow as pa

from dlt_sources.common.rejects import CastFlags
from dlt_sources.postgres_cdc.arrow_types import to_arrow
from dlt_sources.postgres_cdc.columns import bool_array, decode_tuples
from dlt_sources.postgres_cdc.pgoutput import (
    UNCHANGED,
    Column,
    Delete,
    Insert,
    PgOutputError,
    Update,
    Value,
    decode,
    decode_tuple,
)

LSN_COLUMN = "_cdc_lsn"
DELETED_COLUMN = "_cdc_deleted"


@dataclass
class Segment:
    """Rows that share one column layout."""

    columns: tuple[Column, ...]
    key_positions: tuple[int, ...]
    rows: list[list[Value]] = field(default_factory=list)
    lsns: list[int] = field(default_factory=list)
    deleted: list[bool] = field(default_factory=list)
    # Row number -> the key whose warehouse row holds its UNCHANGED values (the row's own
    # key, or the key it had before its primary key was updated).
    lookup_keys: dict[int, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.position = {column.name: i for i, column in enumerate(self.columns)}

    def key_of(self, values: list[Value]) -> Any:
        if len(self.key_positions) == 1:
            return values[self.key_positions[0]]
        return tuple(values[i] for i in self.key_positions)


@dataclass
class UnresolvedRows:
    """Cells of a final table that only the warehouse can fill (unchanged TOASTed values).

    ``keys`` maps a row number to its primary key (text values); ``masks`` maps a
    column to one flag per row, set where the warehouse value belongs.
    """

    keys: dict[int, tuple[str, ...]]
    masks: dict[str, list[bool]]


def key_positions(table: str, primary_key: tuple[str, ...], columns: tuple[Column, ...]) -> tuple[int, ...]:
    positions = {column.name: i for i, column in enumerate(columns)}
    missing = [name for name in primary_key if name not in positions]
    if missing:
        raise ValueError(f"table {table}: primary key column(s) {', '.join(missing)} not replicated")
    return tuple(positions[name] for name in primary_key)


# Byte 5 of an Insert/Update/Delete message: which tuple starts at byte 6.
NEW_TUPLE, KEY_TUPLE = ord("N"), ord("K")
DELETE_TAG = ord("D")
TUPLE_OFFSET = 6
# Messages decoded together: small enough that one chunk's bytes stay in the CPU cache
# while every column is located in turn (a single pass over 1M messages ran 2-3 times slower).
DECODE_CHUNK_ROWS = 32_768


class ChangeLog:
    """One run's changes to one table as raw pgoutput messages, collapsed per primary key.

    Why raw: decoding every message in Python costs more than reading it. Most changes
    are an insert, an update that keeps its key, or (with hard deletes) a delete by key:
    for those the key is read from the message's first bytes, the key's latest message
    is remembered, and only the last message per key is decoded, all at once, column by
    column (``columns.decode_tuples``). A key whose history needs earlier images (a
    primary-key update, REPLICA IDENTITY FULL, a soft delete, or a last image with an
    unchanged TOASTed value) has all its messages replayed one by one through
    ``TableChanges``, which implements those rules.
    """

    def __init__(self, schema: str, name: str, primary_key: tuple[str, ...], hard_deletes: bool) -> None:
        self.schema = schema
        self.name = name
        self.primary_key = primary_key
        self.hard_deletes = hard_deletes
        self.payloads: list[bytes] = []
        self.lsns: list[int] = []
        self.keys: list[Any] = []  # per message: the key it leaves an image for
        self.layouts: list[tuple[int, tuple[Column, ...]]] = []  # (first message, its columns)
        self.latest: dict[Any, int] = {}  # key → its last message
        self.replayed_keys: set[Any] = set()  # keys applied message by message
        self.replay_all = False  # a key not readable as text values (never seen in practice)
        self._key_positions: tuple[int, ...] = ()
        self._key_is_first = False

    def use_columns(self, columns: tuple[Column, ...]) -> None:
        """Columns of the next changes (from a Relation message)."""
        if self.layouts and self.layouts[-1][1] == columns:
            return
        self._key_positions = key_positions(self.name, self.primary_key, columns)
        self._key_is_first = self._key_positions == (0,)
        self.layouts.append((len(self.payloads), columns))

    def add(self, payload: bytes, lsn: int) -> None:
        """An Insert, Update or Delete message: the hot loop of change capture."""
        self.payloads.append(payload)
        self.lsns.append(lsn)
        kind = payload[5]
        if kind == NEW_TUPLE or (kind == KEY_TUPLE and payload[0] == DELETE_TAG and self.hard_deletes):
            if self._key_is_first and payload[8] == 116:  # 't'
                # The usual layout, a key in the first column, inlined: no walk over the tuple.
                key = payload[13 : 13 + int.from_bytes(payload[9:13])]
            else:
                key = self._key_of(decode_tuple(payload, TUPLE_OFFSET)[0])
        else:
            key = self._key_needing_history(payload)
        if key is None:
            self.replay_all = True
        self.keys.append(key)
        self.latest[key] = len(self.payloads) - 1

    def _key_of(self, values: list[Value]) -> Any:
        key = tuple(values[i] for i in self._key_positions)
        if not all(isinstance(value, bytes) for value in key):
            return None
        return key[0] if len(key) == 1 else key

    def _key_needing_history(self, payload: bytes) -> Any:
        """A change that needs earlier images (see the class): its keys, old and new, are replayed."""
        change = decode(payload)
        if isinstance(change, Update) and change.old is not None:
            keys = [self._key_of(change.new), self._key_of(change.old)]
        else:
            keys = [self._key_of(change.old if isinstance(change, Delete) else change.new)]  # type: ignore[union-attr]
        if None in keys:
            return None
        self.replayed_keys.update(keys)
        return keys[0]

    def tables(self) -> Iterator[tuple[tuple[Column, ...], pa.Table, UnresolvedRows | None]]:
        """Each key's last image, as Arrow tables (one or more per column layout) with their
        columns and what the warehouse must fill."""
        if self.replay_all:
            yield from self._replayed(lambda key: True).tables()
            return
        collapsed = self._collapsed()
        yield from collapsed
        if self.replayed_keys:
            yield from self._replayed(self.replayed_keys.__contains__).tables()

    def _layout_ranges(self) -> Iterator[tuple[tuple[Column, ...], int, int]]:
        ends = [first for first, _ in self.layouts[1:]] + [len(self.payloads)]
        for (first, columns), end in zip(self.layouts, ends, strict=False):  # no layout: no changes
            yield columns, first, end

    def _collapsed(self) -> list[tuple[tuple[Column, ...], pa.Table, None]]:
        """Each key's last message decoded, except for keys to replay (which it may add to)."""
        if self.replayed_keys:
            final = sorted(row for key, row in self.latest.items() if key not in self.replayed_keys)
        else:
            final = sorted(self.latest.values())
        tables = []
        for columns, first, end in self._layout_ranges():
            rows = final[bisect_left(final, first) : bisect_left(final, end)]
            for start in range(0, len(rows), DECODE_CHUNK_ROWS):
                table = self._decoded(columns, rows[start : start + DECODE_CHUNK_ROWS])
                if table.num_rows:
                    tables.append((columns, table, None))
        return tables

    def _decoded(self, columns: tuple[Column, ...], rows: list[int]) -> pa.Table:
        """These messages' new images; those with an unchanged TOASTed value are left out and
        their keys marked for the replay."""
        pick = itemgetter(*rows) if len(rows) > 1 else lambda values: (values[rows[0]],)
        try:
            decoded = decode_tuples(pick(self.payloads), TUPLE_OFFSET, len(columns))
        except PgOutputError as exc:
            raise PgOutputError(f"table {self.schema}.{self.name}: {exc}") from None
        flags = CastFlags()
        arrays = [
            to_arrow(column.values, spec.type_oid, spec.type_modifier, flags, spec.name)
            for column, spec in zip(decoded.columns, columns, strict=True)
        ]
        arrays.append(pa.array(pick(self.lsns), type=pa.int64()))
        arrays.append(bool_array(decoded.tags == DELETE_TAG))
        names = [column.name for column in columns] + [LSN_COLUMN, DELETED_COLUMN]
        table = flags.attach(pa.Table.from_arrays(arrays, names=names))
        unchanged = [column.unchanged for column in decoded.columns if column.has_unchanged]
        if not unchanged:
            return table
        needs_fill = np.logical_or.reduce(unchanged)
        self.replayed_keys.update(self.keys[rows[i]] for i in np.flatnonzero(needs_fill))
        return table.filter(bool_array(~needs_fill))

    def _replayed(self, wanted: Callable[[Any], bool]) -> TableChanges:
        """The wanted keys' messages decoded and applied in order, filling unchanged values
        from earlier images."""
        table = TableChanges(self.schema, self.name, self.primary_key, self.hard_deletes)
        for columns, first, end in self._layout_ranges():
            table.use_columns(columns)
            for position in range(first, end):
                if not wanted(self.keys[position]):
                    continue
                change = decode(self.payloads[position])
                lsn = self.lsns[position]
                if isinstance(change, Insert):
                    table.upsert(change.new, lsn)
                elif isinstance(change, Update):
                    table.upsert(change.new, lsn, change.old, change.old_is_row)
                else:
                    table.delete(change.old, lsn, change.old_is_row)  # type: ignore[union-attr]
        return table


class TableChanges:
    """Decoded changes to one table in arrival order; ``hard_deletes`` keeps delete rows to keys only."""

    def __init__(self, schema: str, name: str, primary_key: tuple[str, ...], hard_deletes: bool) -> None:
        self.schema = schema
        self.name = name
        self.primary_key = primary_key
        self.hard_deletes = hard_deletes
        self.segments: list[Segment] = []
        self.latest: dict[Any, tuple[Segment, int]] = {}

    def use_columns(self, columns: tuple[Column, ...]) -> None:
        """Columns of the next changes (from a Relation message); a new layout opens a segment."""
        if self.segments and self.segments[-1].columns == columns:
            return
        self.segments.append(Segment(columns, key_positions(self.name, self.primary_key, columns)))

    def upsert(
        self, new: list[Value], lsn: int, old: list[Value] | None = None, old_is_row: bool = False
    ) -> None:
        """An insert or an update's new image; ``old`` is the key or row sent with an update."""
        segment = self.segments[-1]
        key = segment.key_of(new)
        history_key = key
        if old is not None:
            history_key = segment.key_of(old)
        lookup_key = None
        if UNCHANGED in new:
            lookup_key = self._fill(segment, new, history_key, old if old_is_row else None)
        if history_key != key:  # the primary key itself changed: the old row is gone
            self.delete(old, lsn, old_is_row)  # type: ignore[arg-type]
        self._append(segment, key, new, lsn, False, lookup_key)

    def delete(self, old: list[Value], lsn: int, old_is_row: bool = False) -> None:
        segment = self.segments[-1]
        key = segment.key_of(old)
        if self.hard_deletes:
            values: list[Value] = [None] * len(old)
            for i in segment.key_positions:
                values[i] = old[i]
        else:
            # A soft delete keeps the row, so it needs the row's last values.
            values = list(old) if old_is_row else [UNCHANGED] * len(old)
            for i in segment.key_positions:
                values[i] = old[i]
            if UNCHANGED in values:
                lookup_key = self._fill(segment, values, key, None)
                self._append(segment, key, values, lsn, True, lookup_key)
                return
        self._append(segment, key, values, lsn, True)

    def _append(
        self, segment: Segment, key: Any, values: list[Value], lsn: int, deleted: bool, lookup_key: Any = None
    ) -> None:
        segment.rows.append(values)
        segment.lsns.append(lsn)
        segment.deleted.append(deleted)
        row = len(segment.rows) - 1
        if lookup_key is not None:
            segment.lookup_keys[row] = lookup_key
        self.latest[key] = (segment, row)

    def _fill(self, segment: Segment, values: list[Value], key: Any, old_row: list[Value] | None) -> Any:
        """Replace UNCHANGED by the value from the old row, else from the key's previous image.

        Returns the key to look up in the warehouse for values still UNCHANGED, or None.
        """
        previous = self.latest.get(key)
        lookup_key = None
        for i, value in enumerate(values):
            if value is not UNCHANGED:
                continue
            if old_row is not None and old_row[i] is not UNCHANGED:
                values[i] = old_row[i]
            elif previous is not None:
                before, row = previous
                position = before.position.get(segment.columns[i].name)
                if position is not None:
                    values[i] = before.rows[row][position]
            if values[i] is UNCHANGED:
                # Still unknown: the warehouse has it under the key this history started from.
                lookup_key = previous[0].lookup_keys.get(previous[1], key) if previous else key
        return lookup_key

    def tables(self) -> Iterator[tuple[tuple[Column, ...], pa.Table, UnresolvedRows | None]]:
        """Per segment: its columns, an Arrow table of each key's last image, and what the
        warehouse must fill."""
        final: dict[int, list[int]] = {id(segment): [] for segment in self.segments}
        for segment, row in self.latest.values():
            final[id(segment)].append(row)
        for segment in self.segments:
            rows = sorted(final[id(segment)])
            if rows:
                yield segment.columns, *self._to_arrow(segment, rows)

    def _to_arrow(self, segment: Segment, rows: list[int]) -> tuple[pa.Table, UnresolvedRows | None]:
        images = [segment.rows[i] for i in rows]
        columns = [list(values) for values in zip(*images, strict=True)]
        unresolved: UnresolvedRows | None = None
        if segment.lookup_keys:
            unresolved = self._unresolved(segment, rows, columns)
        flags = CastFlags()
        arrays = [
            to_arrow(
                pa.array(values, type=pa.binary()), column.type_oid, column.type_modifier, flags, column.name
            )
            for values, column in zip(columns, segment.columns, strict=True)
        ]
        arrays.append(pa.array([segment.lsns[i] for i in rows], type=pa.int64()))
        arrays.append(pa.array([segment.deleted[i] for i in rows], type=pa.bool_()))
        names = [column.name for column in segment.columns] + [LSN_COLUMN, DELETED_COLUMN]
        return flags.attach(pa.Table.from_arrays(arrays, names=names)), unresolved

    def _unresolved(
        self, segment: Segment, rows: list[int], columns: list[list[Value]]
    ) -> UnresolvedRows | None:
        """Turn UNCHANGED into NULL placeholders and mark the cells the warehouse must fill."""
        keys: dict[int, tuple[str, ...]] = {}
        masks: dict[str, list[bool]] = {}
        for position, row in enumerate(rows):
            lookup_key = segment.lookup_keys.get(row)
            if lookup_key is None or UNCHANGED not in segment.rows[row]:
                continue
            parts = lookup_key if len(segment.key_positions) > 1 else (lookup_key,)
            keys[position] = tuple(bytes(part).decode() for part in parts)
        if not keys:
            return None
        for position, column in enumerate(segment.columns):
            values = columns[position]
            mask = [value is UNCHANGED for value in values]
            if any(mask):
                masks[column.name] = mask
                columns[position] = [
                    None if flag else value for flag, value in zip(mask, values, strict=True)
                ]
        return UnresolvedRows(keys, masks)
