"""The events-cursor logic of the Stripe source: which events are new, their apply
order, the last state per object, and when the 30-day retention forces a full read."""

from __future__ import annotations

from typing import Any

import pytest

from dlt_sources.errors import SourceError
from dlt_sources.stripe import cursor as c
from dlt_sources.stripe.columns import event_rows, prepare, to_arrow

DAY = 86_400


def ev(eid: str, created: int, obj: dict[str, Any], type_: str = "customer.updated") -> dict[str, Any]:
    return {"id": eid, "object": "event", "created": created, "type": type_, "data": {"object": obj}}


def cus(oid: str, **fields: Any) -> dict[str, Any]:
    return {"id": oid, "object": "customer", **fields}


def test_new_events_dedupes_the_boundary_second_and_sorts() -> None:
    events = [
        ev("evt_3", 12, cus("a")),
        ev("evt_2", 11, cus("a")),
        ev("evt_1", 11, cus("b")),
        ev("evt_0", 10, cus("c")),
        ev("evt_2", 11, cus("a")),  # the same event on two pages
    ]
    assert [e["id"] for e in c.new_events(events, None)] == ["evt_0", "evt_1", "evt_2", "evt_3"]
    cursor = {"created": 11, "ids": ["evt_1"], "read_at": 0}
    assert [e["id"] for e in c.new_events(events, cursor)] == ["evt_2", "evt_3"]


@pytest.mark.parametrize(
    ("broken", "field", "shown"),
    [
        ({"id": None}, "id", "missing"),
        ({"id": ""}, "id", "''"),
        ({"created": "1700000000"}, "created", "'1700000000'"),
        ({"created": True}, "created", "True"),
    ],
)
def test_an_event_the_cursor_cannot_order_stops_the_read_naming_it(
    broken: dict[str, Any], field: str, shown: str
) -> None:
    good = ev("evt_1", 10, cus("a"))
    bad = {**ev("evt_2", 11, cus("b")), **broken}
    read = c.checked([good, bad, ev("evt_3", 12, cus("c"))])
    assert next(read) is good
    with pytest.raises(SourceError) as failed:
        next(read)
    message = str(failed.value)
    assert message.startswith("stripe source: table `events`, event #2 of this read"), message
    assert f"field `{field}` is {shown}" in message and "customer.updated" in message


def test_advance_keeps_ids_of_the_newest_second() -> None:
    cursor = {"created": 11, "ids": ["evt_1"], "read_at": 0}
    applied = c.new_events([ev("evt_2", 11, cus("a"))], cursor)
    assert c.advance(cursor, applied, 5.0) == {"created": 11, "ids": ["evt_1", "evt_2"], "read_at": 5.0}
    applied = c.new_events(
        [ev("evt_4", 13, cus("a")), ev("evt_5", 13, cus("b")), ev("evt_3", 12, cus("a"))], cursor
    )
    assert c.advance(cursor, applied, 6.0) == {"created": 13, "ids": ["evt_4", "evt_5"], "read_at": 6.0}
    assert c.advance(cursor, [], 7.0) == {**cursor, "read_at": 7.0}
    assert c.advance(None, [], 7.0) == {"created": 0, "ids": [], "read_at": 7.0}


def test_high_water_mark_reads_only_the_newest_second() -> None:
    newest_first = iter([ev("evt_9", 20, cus("a")), ev("evt_8", 20, cus("b")), ev("evt_7", 19, cus("c"))])
    assert c.high_water_mark(newest_first, 1.0) == {"created": 20, "ids": ["evt_8", "evt_9"], "read_at": 1.0}
    assert c.high_water_mark([], 2.0) == {"created": 0, "ids": [], "read_at": 2.0}


def test_latest_state_wins_and_deletes_are_tombstones() -> None:
    events = c.new_events(
        [
            ev("evt_4", 13, {"id": "a", "object": "customer", "deleted": True}, "customer.deleted"),
            ev("evt_1", 11, cus("a", email="1")),
            ev("evt_2", 11, cus("b", email="1")),
            ev("evt_3", 12, cus("b", email="2")),
            ev("evt_5", 13, {"id": "dp_1", "object": "dispute"}, "charge.dispute.created"),
            ev("evt_6", 14, {"object": "invoice"}, "invoice.upcoming"),
        ],
        None,
    )
    assert c.latest_states(events, "customer") == {"b": cus("b", email="2"), "a": None}
    assert c.latest_states(events, "invoice") == {}  # no id: not a stored object
    # an event named *.deleted counts even if its object is the last full state
    deleted = [ev("evt_1", 1, cus("z", email="x"), "invoice.deleted")]
    assert c.latest_states(deleted, "customer") == {"z": None}


@pytest.mark.parametrize(
    ("age_days", "expired"),
    [(1, False), (28.9, False), (29.1, True), (31, True)],
)
def test_cursor_expires_before_stripe_drops_events(age_days: float, expired: bool) -> None:
    now = 100 * DAY
    cursor = {"created": 0, "ids": [], "read_at": now - age_days * DAY}
    assert c.is_expired(cursor, now, 30 * DAY, 1 * DAY) is expired
    assert c.is_expired({"created": 5, "ids": []}, now, 30 * DAY) is True  # no read time: unknown


def test_prepare_folds_expanded_objects_and_applies_the_policy() -> None:
    rows = [{"id": "ch_1", "customer": {"id": "cus_1", "object": "customer"}, "amount": "12"}]
    assert prepare("charges", rows, "evolve") == [{"id": "ch_1", "customer": "cus_1", "amount__v_text": "12"}]
    assert prepare("charges", rows, "discard") == [{"id": "ch_1", "customer": "cus_1"}]
    with pytest.raises(
        SourceError, match=r"table `charges`, column `amount` changed type from bigint to text"
    ):
        prepare("charges", rows, "freeze")
    assert prepare("charges", [{"id": "ch_2", "paid": 1}], "discard") == [{"id": "ch_2"}]  # int is not bool


def test_arrow_schema_is_stable_for_all_null_pages() -> None:
    empty = to_arrow("charges", [{"id": "ch_1"}], "freeze")
    full = to_arrow(
        "charges",
        [{"id": "ch_2", "amount": 5, "paid": True, "metadata": {"a": "b"}, "brand_new": 1.5}],
        "freeze",
    )
    shared = [f for f in empty.schema]
    assert [full.schema.field(f.name) for f in shared] == shared
    assert str(empty.schema.field("amount").type) == "int64"
    assert str(empty.schema.field("metadata").type) == "string"
    assert full.column("metadata").to_pylist() == ['{"a":"b"}']
    assert full.schema.field("brand_new").type == "double"  # a new field is a new column


def test_event_rows_keep_the_envelope_and_the_object_reference() -> None:
    event = ev("evt_1", 5, cus("cus_1"), "customer.created") | {
        "api_version": "2024-06-20",
        "livemode": False,
    }
    (row,) = event_rows([event])
    assert row["object_id"] == "cus_1" and row["object_type"] == "customer"
    assert row["type"] == "customer.created" and row["data"] == {"object": cus("cus_1")}
    table = to_arrow("events", [row], "freeze")
    assert table.column("data").to_pylist() == ['{"object":{"id":"cus_1","object":"customer"}}']
