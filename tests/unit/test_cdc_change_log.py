"""The raw-message change log (key from the bytes, only each key's last message decoded, by
column) gives exactly what decoding every message through TableChanges gives."""

from __future__ import annotations

import random
import struct

import pytest

from dlt_sources.postgres_cdc.changes import ChangeLog, TableChanges
from dlt_sources.postgres_cdc.columns import decode_tuples
from dlt_sources.postgres_cdc.pgoutput import (
    UNCHANGED,
    Column,
    Insert,
    PgOutputError,
    Update,
    Value,
    decode,
)
from tests.support.pgoutput import tuple_data

INT8, TEXT, NUMERIC, BOOL = 20, 25, 1700, 16
RELATION = struct.pack(">I", 16_384)
LAYOUT = (
    Column("id", INT8, -1, True),
    Column("note", TEXT, -1, False),
    Column("amount", NUMERIC, (12 << 16 | 2) + 4, False),
    Column("flag", BOOL, -1, False),
)
WIDER = (*LAYOUT, Column("extra", TEXT, -1, False))  # after an ADD COLUMN
COMPOSITE = (Column("note", TEXT, -1, True), Column("id", INT8, -1, True), LAYOUT[2], LAYOUT[3])


def insert(new: list[Value]) -> bytes:
    return b"I" + RELATION + b"N" + tuple_data(*new)


def update(new: list[Value], old: list[Value] | None = None, old_is_row: bool = False) -> bytes:
    head = b"" if old is None else (b"O" if old_is_row else b"K") + tuple_data(*old)
    return b"U" + RELATION + head + b"N" + tuple_data(*new)


def delete(old: list[Value], old_is_row: bool = False) -> bytes:
    return b"D" + RELATION + (b"O" if old_is_row else b"K") + tuple_data(*old)


def collected(table: ChangeLog | TableChanges, primary_key: tuple[str, ...]) -> dict:
    """Per (layout, key): the row written, the cells the warehouse must fill and the key to
    look them up by. Independent of how the rows are split into tables and ordered."""
    out: dict = {}
    written: set[tuple] = set()
    for columns, data, unresolved in table.tables():
        names = tuple(column.name for column in columns)
        for position, row in enumerate(data.to_pylist()):
            key = (names, tuple(row[name] for name in primary_key))
            assert key[1] not in written, f"key {key[1]} written twice"
            written.add(key[1])
            fill = set()
            lookup = None
            if unresolved is not None:
                fill = {name for name, mask in unresolved.masks.items() if mask[position]}
                lookup = unresolved.keys.get(position)
            out[key] = (row, fill, lookup)
    return out


def replayed_by_hand(messages: list[tuple[tuple[Column, ...], bytes]], primary_key, hard: bool) -> dict:
    """The reference: every message decoded and applied through TableChanges."""
    table = TableChanges("public", "t", primary_key, hard)
    for lsn, (columns, payload) in enumerate(messages):
        table.use_columns(columns)
        change = decode(payload)
        if isinstance(change, Insert):
            table.upsert(change.new, lsn)
        elif isinstance(change, Update):
            table.upsert(change.new, lsn, change.old, change.old_is_row)
        else:
            table.delete(change.old, lsn, change.old_is_row)
    return collected(table, primary_key)


def random_messages(rng: random.Random, layouts, primary_key, simple: bool) -> list:
    """Changes to a few keys; ``simple`` keeps to what the fast path handles (no key change,
    no old row, final images without unchanged values are likely)."""
    messages, alive = [], {}
    columns = layouts[0]

    def row(key: int) -> list[Value]:
        values: dict[str, Value] = {
            "id": str(100 + key).encode(),  # several digits: a key read short would collide
            "note": rng.choice([b"", b"n\xc3\xa9", b"note %d" % key, None]),
            "amount": rng.choice([b"1.50", b"-3.00", None]),
            "flag": rng.choice([b"t", b"f"]),
            "extra": rng.choice([b"x", None]),
        }
        if "note" in primary_key:
            values["note"] = b"k%d" % (100 + key)
        return [values[column.name] for column in columns]

    for _ in range(rng.randint(1, 60)):
        if len(layouts) > 1 and rng.random() < 0.05:
            columns = layouts[1]
        key = rng.randint(1, 8)
        choice = rng.random()
        if key not in alive or choice < 0.2:
            new = row(key)
            messages.append((columns, insert(new) if key not in alive else update(new)))
            alive[key] = new
        elif choice < 0.6:
            new = row(key)
            for i, column in enumerate(columns):
                if not column.is_key and rng.random() < 0.3:
                    new[i] = UNCHANGED  # a TOASTed value the update left alone
            if simple or rng.random() < 0.7:
                messages.append((columns, update(new)))
            else:
                other = rng.randint(9, 12) if rng.random() < 0.5 else key
                moved = [
                    str(100 + other).encode() if c.name == "id" else v
                    for c, v in zip(columns, new, strict=True)
                ]
                old = [v if c.is_key else None for c, v in zip(columns, row(key), strict=True)]
                messages.append((columns, update(moved, old, old_is_row=rng.random() < 0.3)))
                key = other
            alive[key] = new
        else:
            old = [v if c.is_key else None for c, v in zip(columns, row(key), strict=True)]
            messages.append((columns, delete(old, old_is_row=not simple and rng.random() < 0.3)))
            alive.pop(key, None)
    return messages


@pytest.mark.parametrize("hard", [True, False])
@pytest.mark.parametrize(
    "layouts", [(LAYOUT,), (LAYOUT, WIDER), (COMPOSITE,)], ids=["one", "added", "composite"]
)
@pytest.mark.parametrize("simple", [True, False])
def test_change_log_equals_message_by_message_replay(hard: bool, layouts, simple: bool) -> None:
    primary_key = ("note", "id") if layouts[0] is COMPOSITE else ("id",)
    replayed_rows = columnar_rows = 0
    for seed in range(150):
        rng = random.Random(seed)
        messages = random_messages(rng, layouts, primary_key, simple)
        log = ChangeLog("public", "t", primary_key, hard)
        for lsn, (columns, payload) in enumerate(messages):
            log.use_columns(columns)
            log.add(payload, lsn)
        got = collected(log, primary_key)
        assert got == replayed_by_hand(messages, primary_key, hard), f"seed {seed}"
        replayed_rows += len(log.replayed_keys)
        columnar_rows += len(got) - len(log.replayed_keys)
    assert replayed_rows > 100 and columnar_rows > 100  # both paths really ran


def test_change_log_keeps_each_keys_last_lsn_in_arrival_order() -> None:
    log = ChangeLog("public", "t", ("id",), True)
    log.use_columns(LAYOUT)
    log.add(insert([b"2", b"a", b"1.00", b"t"]), 10)
    log.add(insert([b"1", b"b", b"2.00", b"f"]), 11)
    log.add(update([b"2", b"c", None, b"t"]), 12)
    log.add(delete([b"1", None, None, None]), 13)
    [(_, data, unresolved)] = list(log.tables())
    assert unresolved is None and not log.replayed_keys
    assert data.to_pylist() == [
        {"id": 2, "note": "c", "amount": None, "flag": True, "_cdc_lsn": 12, "_cdc_deleted": False},
        {"id": 1, "note": None, "amount": None, "flag": None, "_cdc_lsn": 13, "_cdc_deleted": True},
    ]


def test_only_keys_whose_last_image_has_an_unchanged_value_are_replayed() -> None:
    log = ChangeLog("public", "t", ("id",), True)
    log.use_columns(LAYOUT)
    log.add(insert([b"1", b"big", b"1.00", b"t"]), 10)
    log.add(insert([b"2", b"other", b"1.00", b"t"]), 11)
    log.add(update([b"1", UNCHANGED, b"2.00", b"f"]), 12)
    [(_, columnar, _), (_, replayed, unresolved)] = list(log.tables())
    assert log.replayed_keys == {b"1"} and unresolved is None
    assert columnar.column("id").to_pylist() == [2]
    assert replayed.to_pylist()[0] | {"_cdc_lsn": 12} == {
        "id": 1,
        "note": "big",
        "amount": 2,
        "flag": False,
        "_cdc_lsn": 12,
        "_cdc_deleted": False,
    }


def test_decode_tuples_reads_values_nulls_and_unchanged_by_column() -> None:
    decoded = decode_tuples([insert([b"1", b"", None]), insert([b"22", UNCHANGED, b"\xc3\xa9"])], 6, 3)
    assert decoded.tags.tolist() == [ord("I")] * 2
    assert [column.values.to_pylist() for column in decoded.columns] == [
        [b"1", b"22"],
        [b"", None],
        [None, "é".encode()],
    ]
    assert [column.has_unchanged for column in decoded.columns] == [False, True, False]


def test_decode_tuples_refuses_a_malformed_tuple() -> None:
    with pytest.raises(PgOutputError, match="2 columns where the relation has 3"):
        decode_tuples([insert([b"1", b"a"])], 6, 3)
    broken = insert([b"1", b"a"]).replace(b"t\x00\x00\x00\x01a", b"x\x00\x00\x00\x01a")
    with pytest.raises(PgOutputError, match="unknown tuple value kind 'x'"):
        decode_tuples([broken], 6, 2)


def test_a_tuple_that_does_not_match_its_relation_names_the_table() -> None:
    log = ChangeLog("public", "t", ("id",), True)
    log.use_columns(LAYOUT)
    log.add(insert([b"1", b"a"]), 10)
    with pytest.raises(PgOutputError, match=r"table public\.t: tuple of 2 columns where the relation has 4"):
        list(log.tables())
