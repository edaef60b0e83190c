"""The pgoutput decoder against messages built byte by byte from PostgreSQL's
"Logical Replication Message Formats" (protocol version 1)."""

from __future__ import annotations

import struct

import pytest

from dlt_sources.postgres_cdc.pgoutput import (
    UNCHANGED,
    Begin,
    Column,
    Commit,
    Delete,
    Insert,
    PgOutputError,
    Relation,
    Truncate,
    TypeInfo,
    Update,
    decode,
    format_lsn,
    parse_lsn,
)
from tests.support.pgoutput import tuple_data


def string(text: str) -> bytes:
    return text.encode() + b"\0"


def test_begin_and_commit() -> None:
    begin = b"B" + struct.pack(">qqi", 0x16_B374D848, 123_456, 789)
    assert decode(begin) == Begin(final_lsn=0x16_B374D848, commit_time=123_456, xid=789)
    commit = b"C" + struct.pack(">bqqq", 0, 0x100, 0x130, 99)
    assert decode(commit) == Commit(commit_lsn=0x100, end_lsn=0x130, commit_time=99)


def test_relation_lists_columns_with_key_flag_type_and_modifier() -> None:
    message = (
        b"R"
        + struct.pack(">I", 16_384)
        + string("public")
        + string("orders")
        + b"d"
        + struct.pack(">h", 2)
        + b"\x01"
        + string("id")
        + struct.pack(">Ii", 20, -1)
        + b"\x00"
        + string("price")
        + struct.pack(">Ii", 1700, (12 << 16 | 2) + 4)
    )
    assert decode(message) == Relation(
        16_384,
        "public",
        "orders",
        "d",
        (Column("id", 20, -1, True), Column("price", 1700, (12 << 16 | 2) + 4, False)),
    )


def test_insert_with_text_null_and_empty_values() -> None:
    message = b"I" + struct.pack(">I", 7) + b"N" + tuple_data(b"1", None, b"")
    assert decode(message) == Insert(7, [b"1", None, b""])


def test_update_without_old_tuple_keeps_unchanged_toast_marker() -> None:
    message = b"U" + struct.pack(">I", 7) + b"N" + tuple_data(b"1", UNCHANGED, b"3")
    decoded = decode(message)
    assert decoded == Update(7, None, [b"1", UNCHANGED, b"3"], False)
    assert decoded.new[1] is UNCHANGED


def test_update_with_old_key_and_with_old_row() -> None:
    with_key = b"U" + struct.pack(">I", 7) + b"K" + tuple_data(b"1", None) + b"N" + tuple_data(b"2", b"x")
    assert decode(with_key) == Update(7, [b"1", None], [b"2", b"x"], False)
    with_row = b"U" + struct.pack(">I", 7) + b"O" + tuple_data(b"1", b"a") + b"N" + tuple_data(b"1", b"b")
    assert decode(with_row) == Update(7, [b"1", b"a"], [b"1", b"b"], True)


def test_delete_with_key_and_with_full_row() -> None:
    assert decode(b"D" + struct.pack(">I", 9) + b"K" + tuple_data(b"5", None)) == Delete(
        9, [b"5", None], False
    )
    assert decode(b"D" + struct.pack(">I", 9) + b"O" + tuple_data(b"5", b"v")) == Delete(
        9, [b"5", b"v"], True
    )


def test_truncate_lists_relations_and_options() -> None:
    message = b"T" + struct.pack(">Ib", 2, 1) + struct.pack(">II", 10, 11)
    assert decode(message) == Truncate((10, 11), 1)


def test_type_message() -> None:
    message = b"Y" + struct.pack(">I", 90_000) + string("public") + string("mood")
    assert decode(message) == TypeInfo(90_000, "public", "mood")


def test_value_with_multibyte_text_is_sliced_by_byte_length() -> None:
    text = "Zürich, 東京".encode()
    message = b"I" + struct.pack(">I", 1) + b"N" + tuple_data(text, b"2")
    assert decode(message).new == [text, b"2"]


@pytest.mark.parametrize(
    "message",
    [
        b"X",
        b"I" + struct.pack(">I", 1) + b"Q",
        b"I" + struct.pack(">I", 1) + b"N" + struct.pack(">h", 1) + b"z",
        b"D" + struct.pack(">I", 1) + b"N" + tuple_data(b"1"),
        b"U" + struct.pack(">I", 1) + b"K" + tuple_data(b"1") + b"Z",
    ],
)
def test_malformed_messages_are_rejected(message: bytes) -> None:
    with pytest.raises(PgOutputError):
        decode(message)


def test_lsn_text_round_trip() -> None:
    assert format_lsn(0x16_B374D848) == "16/B374D848"
    assert parse_lsn("16/B374D848") == 0x16_B374D848
    assert parse_lsn(format_lsn(0)) == 0
