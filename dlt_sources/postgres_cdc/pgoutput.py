"""Decoder for the binary messages of PostgreSQL's built-in ``pgoutput`` plugin (protocol 1).

Why our own: psycopg2 hands over the raw payload of each replication message and
no maintained Python library decodes pgoutput without pulling in a second driver.
The format is small and documented ("Logical Replication Message Formats" in the
PostgreSQL manual); every message starts with a one-byte tag. Column values stay
the server's text output (``bytes``), so the caller converts whole columns to
Arrow at once instead of one Python object per value.

Tuple values are ``bytes`` (text output), ``None`` (SQL NULL) or ``UNCHANGED``:
a TOASTed value the update did not touch, which the server does not resend.
"""

from __future__ import annotations

import struct
from typing import Final, NamedTuple

_INT16 = struct.Struct(">h")
_INT32 = struct.Struct(">i")
_UINT32 = struct.Struct(">I")
_BEGIN = struct.Struct(">qqI")  # final LSN, commit time, xid
_COMMIT = struct.Struct(">bqqq")  # flags, commit LSN, end LSN, commit time
_RELATION_HEAD = struct.Struct(">I")
_TRUNCATE_HEAD = struct.Struct(">Ib")
_COLUMN_TAIL = struct.Struct(">Ii")  # type OID, type modifier

# Replica identity settings as sent in a Relation message (pg_class.relreplident).
IDENTITY_DEFAULT: Final = "d"
IDENTITY_NOTHING: Final = "n"
IDENTITY_FULL: Final = "f"
IDENTITY_INDEX: Final = "i"

TRUNCATE_CASCADE: Final = 1
TRUNCATE_RESTART_IDENTITY: Final = 2


class _Unchanged:
    """Marker for a TOASTed value that an update left as it was (sent as ``u``)."""

    _instance: _Unchanged | None = None

    def __new__(cls) -> _Unchanged:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED: Final = _Unchanged()

Value = bytes | None | _Unchanged


class PgOutputError(ValueError):
    """A message that does not follow the pgoutput protocol."""


class Column(NamedTuple):
    name: str
    type_oid: int
    type_modifier: int
    is_key: bool


class Begin(NamedTuple):
    final_lsn: int
    commit_time: int  # microseconds since 2000-01-01
    xid: int


class Commit(NamedTuple):
    commit_lsn: int
    end_lsn: int
    commit_time: int


class Origin(NamedTuple):
    lsn: int
    name: str


class Relation(NamedTuple):
    relation_id: int
    namespace: str
    name: str
    replica_identity: str
    columns: tuple[Column, ...]


class TypeInfo(NamedTuple):
    type_oid: int
    namespace: str
    name: str


class Insert(NamedTuple):
    relation_id: int
    new: list[Value]


class Update(NamedTuple):
    relation_id: int
    old: list[Value] | None  # the key ('K') or the whole row ('O'), when the server sent it
    new: list[Value]
    old_is_row: bool  # True for 'O' (REPLICA IDENTITY FULL): every old value is real


class Delete(NamedTuple):
    relation_id: int
    old: list[Value]  # the key ('K', other columns NULL) or the whole row ('O')
    old_is_row: bool


class Truncate(NamedTuple):
    relation_ids: tuple[int, ...]
    options: int


Message = Begin | Commit | Origin | Relation | TypeInfo | Insert | Update | Delete | Truncate


def _string(buf: bytes, pos: int) -> tuple[str, int]:
    end = buf.index(0, pos)
    return buf[pos:end].decode(), end + 1


def decode_tuple(buf: bytes, pos: int) -> tuple[list[Value], int]:
    """TupleData at ``pos``: the values and the position after them.

    The hot loop of change capture: kept to plain indexing and slicing.
    """
    (count,) = _INT16.unpack_from(buf, pos)
    pos += 2
    values: list[Value] = []
    append = values.append
    unpack_length = _INT32.unpack_from
    for _ in range(count):
        kind = buf[pos]
        if kind == 116 or kind == 98:  # 't' text, 'b' binary
            (length,) = unpack_length(buf, pos + 1)
            pos += 5
            append(buf[pos : pos + length])
            pos += length
        elif kind == 110:  # 'n' NULL
            append(None)
            pos += 1
        elif kind == 117:  # 'u' unchanged TOASTed value
            append(UNCHANGED)
            pos += 1
        else:
            raise PgOutputError(f"unknown tuple value kind {chr(kind)!r} at byte {pos}")
    return values, pos


def _relation(buf: bytes) -> Relation:
    (relation_id,) = _RELATION_HEAD.unpack_from(buf, 1)
    namespace, pos = _string(buf, 5)
    name, pos = _string(buf, pos)
    identity = chr(buf[pos])
    (count,) = _INT16.unpack_from(buf, pos + 1)
    pos += 3
    columns = []
    for _ in range(count):
        flags = buf[pos]
        column, pos = _string(buf, pos + 1)
        type_oid, modifier = _COLUMN_TAIL.unpack_from(buf, pos)
        pos += 8
        columns.append(Column(column, type_oid, modifier, bool(flags & 1)))
    return Relation(relation_id, namespace, name, identity, tuple(columns))


def _update(buf: bytes) -> Update:
    (relation_id,) = _UINT32.unpack_from(buf, 1)
    old = None
    pos = 5
    old_kind = buf[pos]
    if old_kind in (75, 79):  # 'K' key or 'O' old row
        old, pos = decode_tuple(buf, pos + 1)
    if buf[pos] != 78:  # 'N'
        raise PgOutputError(f"update of relation {relation_id}: expected 'N' at byte {pos}")
    new, _ = decode_tuple(buf, pos + 1)
    return Update(relation_id, old, new, old_kind == 79)


def _delete(buf: bytes) -> Delete:
    (relation_id,) = _UINT32.unpack_from(buf, 1)
    if buf[5] not in (75, 79):
        raise PgOutputError(f"delete of relation {relation_id}: expected 'K' or 'O' at byte 5")
    old, _ = decode_tuple(buf, 6)
    return Delete(relation_id, old, buf[5] == 79)


def _truncate(buf: bytes) -> Truncate:
    count, options = _TRUNCATE_HEAD.unpack_from(buf, 1)
    ids = struct.unpack_from(f">{count}I", buf, 6)
    return Truncate(tuple(ids), options)


def decode(buf: bytes) -> Message | None:
    """One pgoutput message; None for kinds we don't consume (logical decoding messages)."""
    tag = buf[0]
    if tag == 73:  # 'I'
        (relation_id,) = _UINT32.unpack_from(buf, 1)
        if buf[5] != 78:
            raise PgOutputError(f"insert into relation {relation_id}: expected 'N' at byte 5")
        return Insert(relation_id, decode_tuple(buf, 6)[0])
    if tag == 85:  # 'U'
        return _update(buf)
    if tag == 68:  # 'D'
        return _delete(buf)
    if tag == 66:  # 'B'
        return Begin(*_BEGIN.unpack_from(buf, 1))
    if tag == 67:  # 'C'
        _, commit_lsn, end_lsn, commit_time = _COMMIT.unpack_from(buf, 1)
        return Commit(commit_lsn, end_lsn, commit_time)
    if tag == 82:  # 'R'
        return _relation(buf)
    if tag == 89:  # 'Y'
        (type_oid,) = _UINT32.unpack_from(buf, 1)
        namespace, pos = _string(buf, 5)
        name, _ = _string(buf, pos)
        return TypeInfo(type_oid, namespace, name)
    if tag == 84:  # 'T'
        return _truncate(buf)
    if tag == 79:  # 'O'
        (lsn,) = struct.unpack_from(">q", buf, 1)
        return Origin(lsn, _string(buf, 9)[0])
    if tag == 77:  # 'M' logical decoding message (only sent when asked for)
        return None
    raise PgOutputError(f"unknown pgoutput message tag {chr(tag)!r}")


def format_lsn(lsn: int) -> str:
    """An LSN as PostgreSQL prints it (``16/B374D848``)."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def parse_lsn(text: str) -> int:
    high, low = text.split("/")
    return (int(high, 16) << 32) | int(low, 16)
