"""One run's changes to one table, collapsed to the last image per primary key.

Why collapse here rather than leave it to dlt's merge de-duplication: an update
that leaves a TOASTed column unchanged arrives without that value (``UNCHANGED``),
and dlt's merge replaces whole rows, so the value must be filled in before the
row is written. Keeping every key's latest image in arrival (commit) order gives
both at once: the fill comes from the row's previous image in this run, and only
rows whose previous image is in the warehouse are left for a lookup there
(``unresolved``). Rows are kept as lists of text values and turned into Arrow
column by column at the end, so the per-change cost is a few list operations.

A new Relation message with other columns (ADD/DROP COLUMN) starts a new segment:
each segment becomes its own Arrow table with that segment's columns.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from dlt_sources.postgres_cdc.arrow_types import to_arrow
from dlt_sources.postgres_cdc.pgoutput import UNCHANGED, Column, Value

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


class TableChanges:
    """Changes to one table in arrival order; ``hard_deletes`` keeps delete rows to keys only."""

    def __init__(self, schema: str, name: str, primary_key: tuple[str, ...], hard_deletes: bool) -> None:
        self.schema = schema
        self.name = name
        self.primary_key = primary_key
        self.hard_deletes = hard_deletes
        self.segments: list[Segment] = []
        self.latest: dict[Any, tuple[Segment, int]] = {}
        self.count = 0

    def use_columns(self, columns: tuple[Column, ...]) -> None:
        """Columns of the next changes (from a Relation message); a new layout opens a segment."""
        if self.segments and self.segments[-1].columns == columns:
            return
        positions = {column.name: i for i, column in enumerate(columns)}
        missing = [name for name in self.primary_key if name not in positions]
        if missing:
            raise ValueError(f"table {self.name}: primary key column(s) {', '.join(missing)} not replicated")
        key_positions = tuple(positions[name] for name in self.primary_key)
        self.segments.append(Segment(columns, key_positions))

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
        self.count += 1

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
        arrays = [
            to_arrow(pa.array(values, type=pa.binary()), column.type_oid, column.type_modifier)
            for values, column in zip(columns, segment.columns, strict=True)
        ]
        arrays.append(pa.array([segment.lsns[i] for i in rows], type=pa.int64()))
        arrays.append(pa.array([segment.deleted[i] for i in rows], type=pa.bool_()))
        names = [column.name for column in segment.columns] + [LSN_COLUMN, DELETED_COLUMN]
        return pa.Table.from_arrays(arrays, names=names), unresolved

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
