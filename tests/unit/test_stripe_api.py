"""The Stripe stand-in must behave like Stripe's list API, over real HTTP.

The source's tests trust it, so ordering, cursors, filters and error shapes are pinned here.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from standins.stripe_api import StripeStore, serve_stripe

API_KEY = "sk_test_standin_123"
T0 = 1_700_000_000


@pytest.fixture(autouse=True)
def _no_telemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNTIME__DLTHUB_TELEMETRY", "false")


def _charge(i: int, created: int | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "id": f"ch_{i:05d}",
        "object": "charge",
        "amount": 1000 + i,
        "amount_refunded": 0,
        "currency": "usd",
        "customer": f"cus_{i % 7:05d}",
        "created": T0 + i if created is None else created,
        "status": "succeeded",
        "paid": True,
        "refunded": False,
        "livemode": False,
        "metadata": {"order_id": str(i)},
        "description": None,
        **extra,
    }


@pytest.fixture
def store() -> StripeStore:
    store = StripeStore()
    # 250 charges, three per second, so `created` ties are common
    store.extend("charges", [_charge(i, created=T0 + i // 3) for i in range(250)])
    store.extend(
        "customers",
        [
            {
                "id": f"cus_{i:05d}",
                "created": T0 + i,
                "email": f"c{i}@example.com",
                "name": f"Customer {i}",
                "metadata": {"shop_customer_id": str(i)},
            }
            for i in range(12)
        ],
    )
    return store


@pytest.fixture
def api(store: StripeStore) -> Iterator[tuple[str, requests.Session]]:
    with serve_stripe(store, API_KEY) as url, requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {API_KEY}"
        yield url, session


def _list(api: tuple[str, requests.Session], kind: str = "charges", **params: Any) -> requests.Response:
    url, session = api
    return session.get(f"{url}/v1/{kind}", params=params, timeout=5)


def _walk(api: tuple[str, requests.Session], **params: Any) -> list[dict[str, Any]]:
    """Follow `starting_after` like a client would."""
    out: list[dict[str, Any]] = []
    query = dict(params)
    while True:
        body = _list(api, **query).json()
        out.extend(body["data"])
        if not body["has_more"]:
            return out
        query["starting_after"] = body["data"][-1]["id"]


def _expected_order(objs: list[dict[str, Any]]) -> list[str]:
    return [o["id"] for o in sorted(objs, key=lambda o: (o["created"], o["id"]), reverse=True)]


def test_list_shape_and_default_limit(api: tuple[str, requests.Session]) -> None:
    resp = _list(api)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "application/json"
    body = resp.json()
    assert body["object"] == "list"
    assert body["url"] == "/v1/charges"
    assert body["has_more"] is True
    assert len(body["data"]) == 10
    first = body["data"][0]
    assert first["id"] == "ch_00249"
    assert first["object"] == "charge"
    assert first["livemode"] is False
    assert first["metadata"] == {"order_id": "249"}


def test_newest_first_with_id_tiebreak(api: tuple[str, requests.Session], store: StripeStore) -> None:
    objs = _walk(api, limit=100)
    ids = [o["id"] for o in objs]
    assert ids == _expected_order(objs)
    assert ids == store.ids("charges")
    assert len(ids) == len(set(ids)) == 250
    # ties on `created` are broken by id desc
    same_second = [o["id"] for o in objs if o["created"] == T0]
    assert same_second == ["ch_00002", "ch_00001", "ch_00000"]


@pytest.mark.parametrize("limit", [1, 7, 100])
def test_starting_after_walks_everything_once(api: tuple[str, requests.Session], limit: int) -> None:
    objs = _walk(api, limit=limit)
    assert [o["id"] for o in objs] == [f"ch_{i:05d}" for i in reversed(range(250))]


def test_has_more_is_false_on_exact_last_page(
    api: tuple[str, requests.Session],
) -> None:
    body = _list(api, limit=50, starting_after="ch_00050").json()
    assert [o["id"] for o in body["data"]] == [f"ch_{i:05d}" for i in range(49, -1, -1)]
    assert body["has_more"] is False
    body = _list(api, limit=100, starting_after="ch_00000").json()
    assert body == {
        "object": "list",
        "url": "/v1/charges",
        "has_more": False,
        "data": [],
    }


def test_ending_before_pages_backwards(api: tuple[str, requests.Session]) -> None:
    body = _list(api, limit=3, ending_before="ch_00100").json()
    # the three objects immediately newer than the cursor, still newest first
    assert [o["id"] for o in body["data"]] == ["ch_00103", "ch_00102", "ch_00101"]
    assert body["has_more"] is True
    body = _list(api, limit=5, ending_before="ch_00247").json()
    assert [o["id"] for o in body["data"]] == ["ch_00249", "ch_00248"]
    assert body["has_more"] is False


def test_created_filters(api: tuple[str, requests.Session]) -> None:
    def ids(**params: Any) -> list[str]:
        return [o["id"] for o in _walk(api, limit=100, **params)]

    # created = T0 + i // 3  ->  T0+10 holds ch_00030..ch_00032
    assert ids(**{"created[gte]": T0 + 80}) == [f"ch_{i:05d}" for i in range(249, 239, -1)]
    assert ids(**{"created[gt]": T0 + 80}) == [f"ch_{i:05d}" for i in range(249, 242, -1)]
    assert ids(**{"created[lte]": T0 + 1}) == [f"ch_{i:05d}" for i in range(5, -1, -1)]
    assert ids(**{"created[lt]": T0 + 1}) == ["ch_00002", "ch_00001", "ch_00000"]
    assert ids(created=T0 + 10) == ["ch_00032", "ch_00031", "ch_00030"]
    assert ids(**{"created[gte]": T0 + 10, "created[lt]": T0 + 12}) == [
        f"ch_{i:05d}" for i in range(35, 29, -1)
    ]
    assert ids(**{"created[gt]": T0 + 12, "created[lt]": T0 + 12}) == []
    assert ids(**{"created[gte]": T0 + 10_000}) == []


def test_filters_combine_with_cursor(api: tuple[str, requests.Session]) -> None:
    objs = _walk(api, limit=4, **{"created[gte]": T0 + 50, "created[lte]": T0 + 60})
    assert [o["id"] for o in objs] == [f"ch_{i:05d}" for i in range(182, 149, -1)]


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"starting_after": "ch_nope"}, "starting_after"),
        ({"ending_before": "ch_nope"}, "ending_before"),
        ({"created[gte]": "yesterday"}, "created[gte]"),
        ({"bogus": "1"}, "bogus"),
    ],
)
def test_bad_parameters_are_400(
    api: tuple[str, requests.Session], params: dict[str, Any], param: str
) -> None:
    resp = _list(api, **params)
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert error["message"]


def test_both_cursors_is_400(api: tuple[str, requests.Session]) -> None:
    resp = _list(api, starting_after="ch_00001", ending_before="ch_00005")
    assert resp.status_code == 400
    assert "only specify one" in resp.json()["error"]["message"]


def test_cursor_from_other_kind_is_400(api: tuple[str, requests.Session]) -> None:
    resp = _list(api, "customers", starting_after="ch_00001")
    assert resp.status_code == 400
    assert resp.json()["error"]["message"] == "No such customer: 'ch_00001'"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer sk_test_wrong"},
        {"Authorization": f"Basic {API_KEY}"},
        {"Authorization": "Bearer "},
    ],
)
def test_auth_required(store: StripeStore, headers: dict[str, str]) -> None:
    with serve_stripe(store, API_KEY) as url:
        for path in ("/v1/charges", "/v1/charges/ch_00001", "/v1/nothing"):
            resp = requests.get(url + path, headers=headers, timeout=5)
            assert resp.status_code == 401
            error = resp.json()["error"]
            assert error["type"] == "invalid_request_error"
            assert error["message"]
            assert API_KEY not in resp.text


def test_retrieve_and_404s(api: tuple[str, requests.Session]) -> None:
    url, session = api
    resp = session.get(f"{url}/v1/customers/cus_00003", timeout=5)
    assert resp.status_code == 200
    assert resp.json()["email"] == "c3@example.com"
    assert resp.json()["metadata"] == {"shop_customer_id": "3"}

    resp = session.get(f"{url}/v1/charges/ch_missing", timeout=5)
    assert resp.status_code == 404
    assert resp.json()["error"]["message"] == "No such charge: 'ch_missing'"

    for path in ("/v1/payouts", "/v2/charges", "/", "/v1/charges/ch_00001/refunds"):
        resp = session.get(url + path, timeout=5)
        assert resp.status_code == 404, path
        assert resp.json()["error"]["type"] == "invalid_request_error"

    resp = session.post(f"{url}/v1/charges", timeout=5)
    assert resp.status_code == 405
    assert "error" in resp.json()


def test_empty_kind(api: tuple[str, requests.Session]) -> None:
    body = _list(api, "refunds", limit=100).json()
    assert body == {
        "object": "list",
        "url": "/v1/refunds",
        "has_more": False,
        "data": [],
    }


def test_store_add_update_and_copies(api: tuple[str, requests.Session], store: StripeStore) -> None:
    refund = {
        "id": "re_00001",
        "amount": 500,
        "charge": "ch_00001",
        "currency": "usd",
        "created": T0 + 5,
        "status": "succeeded",
        "reason": "requested_by_customer",
    }
    stored = store.add("refunds", refund)
    refund["amount"] = 1  # the caller's dict is not the stored one
    assert stored["object"] == "refund"
    assert stored["livemode"] is False
    assert stored["metadata"] == {}
    assert store.count("refunds") == 1

    store.update("charges", "ch_00000", amount_refunded=500, refunded=True)
    got = _list(api, **{"created[lte]": T0}).json()["data"]
    assert [o["id"] for o in got] == ["ch_00002", "ch_00001", "ch_00000"]
    assert got[-1]["refunded"] is True
    assert got[-1]["amount_refunded"] == 500
    assert _list(api, "refunds").json()["data"][0]["amount"] == 500

    # moving `created` re-sorts (not how Stripe works, but the store stays consistent)
    store.update("charges", "ch_00000", created=T0 + 1_000)
    assert _list(api, limit=1).json()["data"][0]["id"] == "ch_00000"
    assert store.ids("charges")[0] == "ch_00000"

    with pytest.raises(ValueError, match="duplicate"):
        store.add("charges", _charge(5))
    with pytest.raises(KeyError):
        store.update("charges", "ch_missing", amount=1)
    with pytest.raises(ValueError, match="unknown kind"):
        store.add("payouts", {"id": "po_1", "created": T0})
    with pytest.raises(TypeError, match="created"):
        store.add("charges", {"id": "ch_bad", "created": "2024-01-01"})
    with pytest.raises(ValueError, match="metadata"):
        store.add("charges", {"id": "ch_bad", "created": T0, "metadata": {"n": 1}})
    assert store.count("charges") == 250


def test_new_objects_do_not_disturb_running_pagination(
    api: tuple[str, requests.Session], store: StripeStore
) -> None:
    first = _list(api, limit=100).json()
    store.extend("charges", [_charge(i, created=T0 + 5_000) for i in range(250, 260)])
    rest = _walk(api, limit=100, starting_after=first["data"][-1]["id"])
    ids = [o["id"] for o in first["data"] + rest]
    assert ids == [f"ch_{i:05d}" for i in reversed(range(250))]


def test_injected_faults_carry_retry_after(api: tuple[str, requests.Session], store: StripeStore) -> None:
    store.fail_next(1, status=429, retry_after=2)
    store.fail_next(1, status=503)
    resp = _list(api)
    assert resp.status_code == 429
    assert resp.headers["Retry-After"] == "2"
    assert resp.json()["error"]["type"] == "rate_limit_error"
    resp = _list(api)
    assert resp.status_code == 503
    assert "Retry-After" not in resp.headers
    assert _list(api).status_code == 200


def test_concurrent_clients(store: StripeStore) -> None:
    def walk(url: str) -> list[str]:
        with requests.Session() as session:
            session.headers["Authorization"] = f"Bearer {API_KEY}"
            return [o["id"] for o in _walk((url, session), limit=25)]

    with serve_stripe(store, API_KEY) as url, ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(walk, [url] * 8, timeout=60))
    assert results == [store.ids("charges")] * 8


def test_server_binds_loopback_and_stops(store: StripeStore, capfd: pytest.CaptureFixture[str]) -> None:
    with serve_stripe(store, API_KEY) as url:
        parts = urlsplit(url)
        assert parts.hostname == "127.0.0.1"
        assert parts.port and parts.port > 0
        requests.get(f"{url}/v1/charges", timeout=5)
        requests.get(
            f"{url}/v1/charges",
            headers={"Authorization": f"Bearer {API_KEY}"},
            timeout=5,
        )
    assert capfd.readouterr().err == ""  # no per-request log lines
    with (
        pytest.raises(OSError),
        socket.create_connection((parts.hostname, parts.port), timeout=1),
    ):
        pass


def test_thousand_pages_are_fast() -> None:
    store = StripeStore()
    store.extend("charges", [_charge(i, created=T0 + i // 10) for i in range(100_000)])
    with serve_stripe(store, API_KEY) as url, requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {API_KEY}"
        started = time.perf_counter()
        objs = _walk((url, session), limit=100)
        elapsed = time.perf_counter() - started
    assert len(objs) == 100_000
    # ~1-4 s idle, ~10 s on a busy 2-CPU box; the budget only guards against
    # pathologies such as Nagle/delayed-ACK stalls (40 ms per page -> 40 s)
    budget = float(os.environ.get("STRIPE_STANDIN_PAGE_BUDGET_S", "30"))
    assert elapsed < budget, f"1000 pages took {elapsed:.1f}s"


# ------------------------------------------------------------------------- events feed
def _event_store(now: list[float]) -> StripeStore:
    store = StripeStore(clock=lambda: now[0])
    store.add("customers", {"id": "cus_1", "created": T0, "email": "a@example.com"})
    store.add("charges", _charge(1, customer="cus_1"))
    store.add("charges", _charge(2, status="failed", paid=False))
    return store


def test_mutations_emit_events_like_stripe() -> None:
    now = [float(T0 + 100)]
    store = _event_store(now)
    now[0] += 1
    store.update("customers", "cus_1", email="b@example.com")
    refund = store.refund_charge("ch_00001", 1001)  # the whole amount
    tombstone = store.delete_customer("cus_1")
    store.add("invoices", {"id": "in_1", "created": T0 + 101, "amount_due": 5, "lines": {"data": []}})

    events = store.events()
    assert [e["type"] for e in events] == [
        "customer.created",
        "charge.succeeded",
        "charge.failed",  # a new charge is announced by its outcome, as Stripe does
        "customer.updated",
        "refund.created",
        "charge.refunded",
        "customer.deleted",
        "invoice.created",
    ]
    assert [e["created"] for e in events] == [T0 + 100] * 3 + [T0 + 101] * 5
    assert [e["id"] for e in events] == sorted(e["id"] for e in events)  # ids follow emission order
    updated = events[3]
    assert updated["data"]["object"]["email"] == "b@example.com"
    assert updated["data"]["previous_attributes"] == {"email": "a@example.com"}
    assert events[4]["data"]["object"] == store.get("refunds", refund["id"])
    refunded = events[5]["data"]["object"]
    assert (refunded["amount_refunded"], refunded["refunded"]) == (1001, True)
    assert store.get("charges", "ch_00001")["amount_refunded"] == 1001
    assert events[6]["data"]["object"] == tombstone == {"id": "cus_1", "object": "customer", "deleted": True}
    assert store.get("customers", "cus_1") is None and store.ids("customers") == []
    assert all(e["object"] == "event" and e["api_version"] for e in events)

    with pytest.raises(ValueError, match="exceeds"):
        store.refund_charge("ch_00001", 1)
    with pytest.raises(KeyError):
        store.delete_customer("cus_1")


def test_events_endpoint_filters_and_retention() -> None:
    now = [float(T0 + 100)]
    store = _event_store(now)
    now[0] += 10
    store.update("charges", "ch_00002", description="retry")
    with serve_stripe(store, API_KEY) as url, requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {API_KEY}"

        def types(**params: Any) -> list[str]:
            resp = session.get(f"{url}/v1/events", params=params, timeout=5)
            assert resp.status_code == 200, resp.text
            return [e["type"] for e in resp.json()["data"]]

        # newest first
        assert types() == ["charge.updated", "charge.failed", "charge.succeeded", "customer.created"]
        assert types(type="charge.*") == ["charge.updated", "charge.failed", "charge.succeeded"]
        assert types(type="customer.created") == ["customer.created"]
        assert types(**{"types[]": ["customer.created", "charge.updated"]}) == [
            "charge.updated",
            "customer.created",
        ]
        assert types(**{"created[gte]": T0 + 101}) == ["charge.updated"]
        page = session.get(f"{url}/v1/events", params={"limit": 2}, timeout=5).json()
        assert page["has_more"] is True and page["url"] == "/v1/events"
        rest = session.get(
            f"{url}/v1/events", params={"limit": 2, "starting_after": page["data"][-1]["id"]}, timeout=5
        ).json()
        assert [e["type"] for e in rest["data"]] == ["charge.succeeded", "customer.created"]
        bad = session.get(f"{url}/v1/events", params={"type": "a", "types[]": "b"}, timeout=5)
        assert bad.status_code == 400
        # Stripe keeps 30 days of events
        now[0] += 30 * 86_400 - 5
        assert types() == ["charge.updated"]


def test_paging_quirks(store: StripeStore, api: tuple[str, requests.Session]) -> None:
    store.empty_last_page = True
    store.repeat_last_item = True
    pages: list[list[str]] = []
    query: dict[str, Any] = {"limit": 100}
    while True:
        body = _list(api, **query).json()
        pages.append([o["id"] for o in body["data"]])
        if not body["has_more"] or not body["data"]:
            break
        query["starting_after"] = body["data"][-1]["id"]
    assert pages[-1] == []  # has_more was true on the last real page
    assert pages[1][0] == pages[0][-1]  # the cursor object shows up again
    assert len({i for p in pages for i in p}) == 250

    seen: list[tuple[str, int]] = []
    store.on_page = lambda endpoint, served: seen.append((endpoint, served))
    _list(api)
    assert seen and seen[-1][0] == "charges"


def test_random_faults_are_seeded_and_mixed(store: StripeStore) -> None:
    store.fault_rate = 1.0
    store.fault_kinds = ("truncate", "timeout", "502")
    store.timeout_sleep = 0.3
    with serve_stripe(store, API_KEY) as url, requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {API_KEY}"
        outcomes = []
        for _ in range(12):
            try:
                resp = session.get(f"{url}/v1/charges", timeout=0.15)
            except requests.Timeout:
                outcomes.append("timeout")
                continue
            if resp.status_code == 200:
                with pytest.raises(ValueError):
                    resp.json()  # valid status, body cut in half
                outcomes.append("truncate")
            else:
                outcomes.append(str(resp.status_code))
    assert set(outcomes) == {"truncate", "timeout", "502"}
    assert sum(store.faults_served.values()) == 12
    with pytest.raises(ValueError, match="unknown fault kinds"):
        StripeStore(fault_kinds=("418",))
    replay = StripeStore(fault_rate=0.5, seed=3)
    again = StripeStore(fault_rate=0.5, seed=3)
    assert [replay.random_fault() for _ in range(20)] == [again.random_fault() for _ in range(20)]
