"""Collapsing one run's changes to the last image per key, and filling unchanged TOASTed values."""

from __future__ import annotations

import pyarrow as pa

from dlt_sources.postgres_cdc.changes import DELETED_COLUMN, LSN_COLUMN, TableChanges
from dlt_sources.postgres_cdc.pgoutput import UNCHANGED, Column

INT8, TEXT, JSONB = 20, 25, 3802
COLUMNS = (Column("id", INT8, -1, True), Column("note", TEXT, -1, False), Column("big", TEXT, -1, False))


def changes(hard_deletes: bool = True) -> TableChanges:
    table = TableChanges("public", "items", ("id",), hard_deletes)
    table.use_columns(COLUMNS)
    return table


def only_table(table: TableChanges) -> tuple[pa.Table, object]:
    [(_, data, unresolved)] = list(table.tables())
    return data, unresolved


def test_several_updates_to_one_row_collapse_to_the_last() -> None:
    table = changes()
    table.upsert([b"1", b"a", b"x"], lsn=10)
    table.upsert([b"1", b"b", UNCHANGED], lsn=11)
    table.upsert([b"1", b"c", UNCHANGED], lsn=12)
    data, unresolved = only_table(table)
    assert unresolved is None
    assert data.to_pylist() == [{"id": 1, "note": "c", "big": "x", LSN_COLUMN: 12, DELETED_COLUMN: False}]


def test_unchanged_value_without_earlier_image_is_left_for_the_warehouse() -> None:
    table = changes()
    table.upsert([b"2", b"kept", b"y"], lsn=5)
    table.upsert([b"1", b"b", UNCHANGED], lsn=10)
    data, unresolved = only_table(table)
    assert data.column("big").to_pylist() == ["y", None]
    assert unresolved.keys == {1: ("1",)}
    assert unresolved.masks == {"big": [False, True]}


def test_real_null_is_not_mistaken_for_unchanged() -> None:
    table = changes()
    table.upsert([b"1", None, UNCHANGED], lsn=10)
    _, unresolved = only_table(table)
    assert unresolved.masks == {"big": [True]}  # "note" is a real NULL, not to be filled


def test_old_row_of_replica_identity_full_fills_unchanged_values() -> None:
    table = changes()
    table.upsert([b"1", b"b", UNCHANGED], lsn=10, old=[b"1", b"a", b"from-old"], old_is_row=True)
    data, unresolved = only_table(table)
    assert unresolved is None
    assert data.column("big").to_pylist() == ["from-old"]


def test_hard_delete_keeps_only_the_key() -> None:
    table = changes()
    table.upsert([b"1", b"a", b"x"], lsn=10)
    table.delete([b"1", None, None], lsn=11)
    data, _ = only_table(table)
    assert data.to_pylist() == [{"id": 1, "note": None, "big": None, LSN_COLUMN: 11, DELETED_COLUMN: True}]


def test_soft_delete_keeps_the_last_values() -> None:
    table = changes(hard_deletes=False)
    table.upsert([b"1", b"a", b"x"], lsn=10)
    table.delete([b"1", None, None], lsn=11)
    data, unresolved = only_table(table)
    assert unresolved is None
    assert data.to_pylist() == [{"id": 1, "note": "a", "big": "x", LSN_COLUMN: 11, DELETED_COLUMN: True}]


def test_delete_then_reinsert_in_one_run_ends_inserted() -> None:
    table = changes()
    table.upsert([b"1", b"a", b"x"], lsn=10)
    table.delete([b"1", None, None], lsn=11)
    table.upsert([b"1", b"again", b"z"], lsn=12)
    data, _ = only_table(table)
    assert data.to_pylist() == [{"id": 1, "note": "again", "big": "z", LSN_COLUMN: 12, DELETED_COLUMN: False}]


def test_primary_key_change_deletes_the_old_key() -> None:
    table = changes()
    table.upsert([b"2", b"a", UNCHANGED], lsn=10, old=[b"1", None, None])
    data, _ = only_table(table)
    rows = {row["id"]: row[DELETED_COLUMN] for row in data.to_pylist()}
    assert rows == {1: True, 2: False}


def test_added_column_opens_a_segment_and_fills_across_segments() -> None:
    table = changes()
    table.upsert([b"1", b"a", b"x"], lsn=10)
    table.upsert([b"2", b"a", b"y"], lsn=11)
    table.use_columns((*COLUMNS, Column("extra", JSONB, -1, False)))
    table.upsert([b"1", b"b", UNCHANGED, b'{"k": 1}'], lsn=12)
    segments = list(table.tables())
    assert [data.num_rows for _, data, _ in segments] == [1, 1]  # id 2 in the old layout, id 1 in the new
    (_, old, _), (columns, new, unresolved) = segments
    assert old.column("id").to_pylist() == [2]
    assert unresolved is None
    assert new.to_pylist()[0]["big"] == "x" and new.to_pylist()[0]["extra"] == '{"k": 1}'
    assert columns[-1].name == "extra"
