"""The campaign's row comparison must see every way a warehouse can disagree with its source."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

from tests.reliability.truth import compare

SOURCE = [(1, "a", Decimal("1.50")), (2, "b", Decimal("2.00")), (3, "c", Decimal("3.25"))]


def test_equal_tables_agree_whatever_the_order_and_representation() -> None:
    loaded = [(3, "c", Decimal("3.250")), (1, "a", Decimal("1.5")), (2, "b", Decimal("2"))]
    result = compare("t", SOURCE, loaded)
    assert (result.compared, result.lost, result.duplicated, result.wrong, result.ok) == (3, 0, 0, 0, True)


def test_a_missing_row_is_lost() -> None:
    result = compare("t", SOURCE, SOURCE[:2])
    assert (result.lost, result.duplicated, result.wrong, result.ok) == (1, 0, 0, False)


def test_a_row_loaded_twice_is_duplicated() -> None:
    result = compare("t", SOURCE, [*SOURCE, SOURCE[0]])
    assert (result.lost, result.duplicated, result.wrong) == (0, 1, 0)


def test_a_stale_value_and_a_delete_that_never_arrived_are_wrong() -> None:
    stale = [SOURCE[0], (2, "b", Decimal("9.99")), SOURCE[2], (4, "gone", None)]
    result = compare("t", SOURCE, stale)
    assert (result.lost, result.duplicated, result.wrong) == (0, 0, 2)


def test_timestamps_compare_in_utc() -> None:
    utc = datetime(2026, 1, 1, 12, tzinfo=UTC)
    plus_two = utc.astimezone(timezone(timedelta(hours=2)))
    assert compare("t", [(1, utc)], [(1, plus_two)]).ok
    assert not compare("t", [(1, utc)], [(1, utc + timedelta(microseconds=1))]).ok
