"""The Conformer keeps each column's declared nullability (dlt's incremental relies on it)."""

from __future__ import annotations

import pyarrow as pa
import pytest
import sqlalchemy as sa

from dlt_sources.sql_database.columns import Conformer, ConversionError, plan_column


def _conformer() -> Conformer:
    plans = (
        plan_column("id", sa.BigInteger(), nullable=False),
        plan_column("updated_at", sa.DateTime(timezone=True), nullable=False),
        plan_column("note", sa.Text(), nullable=True),
    )
    return Conformer("shop", "orders", plans, ("id",))


def _batch(updated: list[int | None]) -> pa.RecordBatch:
    return pa.record_batch(
        {
            "id": pa.array([1, 2], pa.int64()),
            "updated_at": pa.array(updated, pa.timestamp("us", tz="UTC")),
            "note": pa.array(["a", None]),
        }
    )


def test_not_null_columns_are_not_nullable_in_arrow() -> None:
    table = _conformer()(_batch([10, 20]))
    assert [(f.name, f.nullable) for f in table.schema] == [
        ("id", False),
        ("updated_at", False),
        ("note", True),
    ]
    assert table.column("note").null_count == 1


def test_null_in_a_not_null_column_names_the_row() -> None:
    with pytest.raises(ConversionError) as failure:
        _conformer()(_batch([10, None]))
    message = str(failure.value)
    assert "table `orders`, column `updated_at`" in message
    assert "declared NOT NULL" in message
    assert "(row id=2)" in message
