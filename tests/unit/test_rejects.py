"""The shared bad-record checks (dlt_sources/common/rejects.py) on Arrow batches and JSON records.

GIVEN a batch with one bad row of each kind WHEN it is screened THEN the good rows come back
unchanged, each bad row is recorded with field, reason and key (quarantine) or the first one
raises naming source, table, row and field (fail).
"""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pyarrow as pa
import pytest

from dlt_sources.common import rejects
from dlt_sources.common.rejects import CastFlags, Quarantine, RecordRejected, tolerant_loads
from dlt_sources.errors import SourceError

TS = pa.timestamp("us", tz="UTC")
INT64_MAX = (1 << 63) - 1


def _rows(quarantine: Quarantine) -> list[dict]:
    rows = quarantine.take()
    return [] if rows is None else rows.to_pylist()


# GIVEN one batch per case: row 1 is good, row 2 carries the bad value
CASES = [
    # case, column, arrow type, bad value, reason
    ("null key", "id", pa.int64(), None, rejects.NULL_KEY),
    ("oversized string", "note", pa.string(), "x" * 2000, rejects.OVERSIZED_STRING),
    ("timestamp sentinel (ADBC infinity)", "at", TS, INT64_MAX, rejects.TIMESTAMP_OUT_OF_RANGE),
    ("timestamp after 9999", "at", TS, 32 * 10**16, rejects.TIMESTAMP_OUT_OF_RANGE),
    ("date before year 1", "day", pa.date32(), -800_000, rejects.TIMESTAMP_OUT_OF_RANGE),
    ("epoch seconds after 9999", "created", pa.int64(), 10**15, rejects.TIMESTAMP_OUT_OF_RANGE),
]


def _batch(column: str, type_: pa.DataType, bad: object) -> pa.Table:
    good = {"id": 1, "note": "ok", "at": 1_700_000_000_000_000, "day": 20_000, "created": 1_700_000_000}
    columns = {
        name: pa.array([value, bad if name == column else value], type=type_ if name == column else None)
        for name, value in good.items()
    }
    columns["id"] = pa.array([1, None if column == "id" else 2], pa.int64())
    columns["at"] = columns["at"].cast(TS) if column != "at" else columns["at"]
    columns["day"] = columns["day"].cast(pa.int32()).cast(pa.date32()) if column != "day" else columns["day"]
    return pa.table(columns)


@pytest.mark.parametrize(("case", "column", "type_", "bad", "reason"), CASES, ids=[c[0] for c in CASES])
def test_quarantine_keeps_the_good_rows_and_records_the_bad_one(
    case: str, column: str, type_: pa.DataType, bad: object, reason: str
) -> None:
    quarantine = Quarantine("src", max_string_bytes=1000)
    batch = _batch(column, type_, bad)
    good = quarantine.screen("things", batch, ("id",), epoch_seconds=("created",))
    assert good.num_rows == 1 and good.column("id").to_pylist() == [1]
    [row] = _rows(quarantine)
    assert (row["source"], row["table_name"], row["field"], row["reason"]) == (
        "src",
        "things",
        column,
        reason,
    )
    assert len(row["record"]) <= rejects.RECORD_BYTES
    if column != "id":
        assert row["record_key"] == "id=2"


@pytest.mark.parametrize(("case", "column", "type_", "bad", "reason"), CASES, ids=[c[0] for c in CASES])
def test_fail_mode_names_source_table_row_and_field(
    case: str, column: str, type_: pa.DataType, bad: object, reason: str
) -> None:
    quarantine = Quarantine("src", "fail", max_string_bytes=1000)
    with pytest.raises(RecordRejected) as failure:
        quarantine.screen("things", _batch(column, type_, bad), ("id",), epoch_seconds=("created",))
    message = str(failure.value)
    assert all(part in message for part in ("source src", "table `things`", f"field `{column}`", reason))
    assert isinstance(failure.value, SourceError)


def test_a_clean_batch_comes_back_as_it_is() -> None:
    quarantine = Quarantine("src")
    batch = _batch("note", pa.string(), "fine")
    assert quarantine.screen("things", batch, ("id",)) is batch
    assert quarantine.take() is None


def test_year_1_and_year_9999_are_kept() -> None:
    edges = pa.array([datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)], TS)
    quarantine = Quarantine("src")
    assert quarantine.screen("t", pa.table({"id": [1, 2], "at": edges}), ("id",)).num_rows == 2


def test_cast_failures_are_nulled_flagged_and_quarantined_with_their_value() -> None:
    text = pa.array(["2026-01-01 00:00:00+00", "infinity", None, "12000-01-01 00:00:00+00"])
    flags = CastFlags()
    cast = flags.cast("at", text, TS)
    assert cast.null_count == 3
    table = flags.attach(pa.table({"id": [1, 2, 3, 4], "at": cast}))
    quarantine = Quarantine("src")
    good = quarantine.screen("t", table, ("id",))
    assert good.column_names == ["id", "at"] and good.column("id").to_pylist() == [1, 3]
    rows = _rows(quarantine)
    assert [(r["record_key"], r["reason"]) for r in rows] == [
        ("id=2", rejects.TIMESTAMP_OUT_OF_RANGE),
        ("id=4", rejects.TIMESTAMP_OUT_OF_RANGE),
    ]
    assert "'infinity'" in rows[0]["detail"]


def test_decimal_cast_failures_are_numbers_out_of_range() -> None:
    flags = CastFlags()
    flags.cast("amount", pa.array(["1.50", "NaN", "1e40"]), pa.decimal128(12, 2))
    table = flags.attach(pa.table({"id": [1, 2, 3]}))
    quarantine = Quarantine("src")
    assert quarantine.screen("t", table, ("id",)).num_rows == 1
    assert {r["reason"] for r in _rows(quarantine)} == {rejects.NUMBER_OUT_OF_RANGE}


def test_json_records_with_bad_text_or_too_large_integers_are_rejected() -> None:
    body = b'[{"id": 1, "n": 5}, {"id": 2, "s": "\\ud800"}, {"id": 3, "n": 9223372036854775808}, ' + (
        b'{"id": 4, "n": 18446744073709551616}, {"id": 5, "s": "\xff"}]'
    )
    records = tolerant_loads(body)
    quarantine = Quarantine("src")
    kept = quarantine.screen_records("t", records, ("id",), int_columns=("n",))
    assert [r["id"] for r in kept] == [1]
    rows = _rows(quarantine)
    assert [(r["record_key"], r["field"], r["reason"]) for r in rows] == [
        ("id=2", "s", rejects.INVALID_UTF8),
        ("id=3", "n", rejects.NUMBER_OUT_OF_RANGE),
        ("id=4", "n", rejects.NUMBER_OUT_OF_RANGE),
        ("id=5", "s", rejects.INVALID_UTF8),
    ]
    assert all(r["record"].isascii() for r in rows)


def test_tolerant_loads_still_refuses_what_is_not_json() -> None:
    with pytest.raises(orjson.JSONDecodeError):
        tolerant_loads(b'{"truncated": ')


def test_the_mode_is_checked() -> None:
    with pytest.raises(SourceError, match="bad_records"):
        Quarantine("src", "ignore")
