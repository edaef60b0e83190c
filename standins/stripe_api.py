"""Local HTTP stand-in for the parts of Stripe's public API that the dlt source reads.

Why: the demo and the tests must run offline and deterministically, yet exercise the
real HTTP code path of ``dlt_sources.stripe`` (auth, cursor pagination, ``created``
filters, error shapes, the events feed). Only ``GET`` list/retrieve endpoints for
``customers``, ``charges``, ``refunds``, ``invoices`` and ``events`` are implemented,
following Stripe's documented semantics:

* lists are newest first (``created`` desc, ``id`` desc as tiebreak);
* ``limit`` 1..100 (default 10), ``starting_after`` / ``ending_before`` object-id cursors;
* ``created`` filters: ``created=<ts>`` and ``created[gt|gte|lt|lte]=<ts>``;
* ``/v1/events`` also takes ``type`` (``*`` wildcard allowed) or ``types[]`` (a list of
  exact names), and only keeps the last 30 days of events;
* every mutation of the store emits an event like Stripe does (``customer.created``,
  ``charge.succeeded``/``failed``/``pending`` for a new charge, ``<object>.updated`` with
  ``previous_attributes``, ``refund.created`` + ``charge.refunded`` for a refund,
  ``customer.deleted``); ``data.object`` is the object's state after the change;
* errors are ``{"error": {"type": ..., "message": ...}}`` with 400/401/404 statuses.

Fault and edge-case simulation for client tests: ``fail_next`` (canned errors),
a seeded ``fault_rate`` mixing 429 + ``Retry-After``, 500, 502, timeouts, truncated
bodies and connections dropped mid-body, and paging quirks (``empty_last_page``,
``repeat_last_item``, ``on_page`` hook to mutate objects while a client is paging).

Stdlib ``ThreadingHTTPServer`` only; bodies are assembled from cached orjson bytes so
that a thousand 100-object pages are served in a few seconds.
"""

from __future__ import annotations

import bisect
import contextlib
import fnmatch
import random
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson

from standins.loopback import LoopbackServer, QuietHandler, serving

KINDS: dict[str, str] = {
    "customers": "customer",
    "charges": "charge",
    "refunds": "refund",
    "invoices": "invoice",
}
"""List endpoint name -> Stripe ``object`` value (the mutable object kinds)."""

EVENT_RETENTION_S = 30 * 24 * 3600
"""Stripe lists events of the last 30 days only."""
API_VERSION = "2024-06-20"
FAULT_KINDS: tuple[str, ...] = ("429", "500", "502", "timeout", "truncate", "drop")
"""What ``fault_rate`` mixes: 429 with Retry-After, 500, 502, a response slower than the
client's timeout, a 200 whose body is cut in half, and a 200 whose connection drops half
way through the body its Content-Length announced."""
_EVENT_TAIL = (
    b'"livemode":false,"pending_webhooks":0,"request":{"id":null,"idempotency_key":null},"type":"%s"}'
)
_NEW_CHARGE_EVENTS = {"succeeded": "charge.succeeded", "failed": "charge.failed", "pending": "charge.pending"}

DEFAULT_LIMIT = 10
MAX_LIMIT = 100
_CREATED_OPS = ("gt", "gte", "lt", "lte")
_LIST_PARAMS = frozenset(
    {"limit", "starting_after", "ending_before", "created"} | {f"created[{op}]" for op in _CREATED_OPS}
)
_EVENT_PARAMS = _LIST_PARAMS | {"type", "types", "delivery_success"}

# Sort key of an object in ascending (oldest first) order; lists are served reversed.
_Key = tuple[int, str]


@dataclass
class _Collection:
    """Objects of one kind plus an ascending ``(created, id)`` index for bisecting."""

    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    raw: dict[str, bytes] = field(default_factory=dict)
    keys: list[_Key] = field(default_factory=list)


@dataclass(frozen=True)
class _Fault:
    """A canned error response, used to exercise client retry logic."""

    status: int
    retry_after: float | None


class StripeError(Exception):
    """An API error carrying the HTTP status and Stripe's error ``type``/``param``."""

    def __init__(
        self,
        status: int,
        message: str,
        type_: str = "invalid_request_error",
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.param = param
        self.headers = headers or {}

    def body(self) -> bytes:
        """Stripe's error JSON shape."""
        error: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.param:
            error["param"] = self.param
        return orjson.dumps({"error": error})


class StripeStore:
    """Thread-safe in-memory store of Stripe-shaped objects, keyed by list endpoint name.

    Objects are deep-copied on the way in (via an orjson round trip, which also proves
    they are JSON-serialisable), so callers may keep mutating their own dicts.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        fault_rate: float = 0.0,
        seed: int = 0,
        fault_kinds: Iterable[str] = FAULT_KINDS,
        timeout_sleep: float = 0.5,
        retry_after: float = 0.01,
    ) -> None:
        self._lock = threading.RLock()
        self._collections: dict[str, _Collection] = {kind: _Collection() for kind in KINDS}
        self._events = _Collection()
        self._event_types: dict[str, str] = {}
        self._event_seq = 0
        self._faults: list[_Fault] = []
        self.clock = clock
        """Source of event ``created`` timestamps and of the 30-day retention window."""
        # random faults: a seeded generator, so a failing run can be replayed
        unknown = set(fault_kinds) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; expected some of {FAULT_KINDS}")
        self.fault_rate = fault_rate
        self.fault_kinds = tuple(fault_kinds)
        self.timeout_sleep = timeout_sleep
        self.retry_after = retry_after
        self._rng = random.Random(seed)
        self.faults_served: Counter[str] = Counter()
        # paging quirks Stripe's docs warn clients about
        self.empty_last_page = False
        """Say ``has_more: true`` on the last page, so the client fetches an empty page."""
        self.repeat_last_item = False
        """Start each ``starting_after`` page with the cursor object itself (a duplicate)."""
        self.on_page: Callable[[str, int], None] | None = None
        """Called as ``on_page(endpoint, pages_served)`` after each list page is built."""
        # list pages answered; lets tests prove the filtering happens server-side
        self.requests_served = 0

    # ----------------------------------------------------------------- mutation
    def add(self, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Add one object; returns the stored copy (with defaults filled in)."""
        return self.extend(kind, [obj])[0]

    def extend(
        self, kind: str, objs: Iterable[dict[str, Any]], *, history: bool = False
    ) -> list[dict[str, Any]]:
        """Add many objects at once; re-sorts the index once instead of per insert.

        ``history=True`` seeds objects that existed before now: their creation events
        are stamped with the object's own ``created`` rather than the clock, so a store
        seeded the same way lists the same events after every restart.
        """
        coll = self._collection(kind)
        prepared = [self._prepare(kind, obj) for obj in objs]
        with self._lock:
            seen: set[str] = set()
            for stored, _ in prepared:
                oid = stored["id"]
                if oid in coll.objects or oid in seen:
                    raise ValueError(f"duplicate {KINDS[kind]} id {oid!r}")
                seen.add(oid)
            for stored, raw in prepared:
                coll.objects[stored["id"]] = stored
                coll.raw[stored["id"]] = raw
                coll.keys.append((stored["created"], stored["id"]))
            coll.keys.sort()
            for stored, raw in prepared:
                self._emit(_created_event_type(kind, stored), raw, at=stored["created"] if history else None)
        return [stored for stored, _ in prepared]

    def add_raw(self, kind: str, key: str, created: int, raw: bytes) -> None:
        """List one object's JSON text exactly as given (no event): a malformed object for the
        bad-input tests (no id, invalid UTF-8, a huge number). ``key`` stands in for its id."""
        coll = self._collection(kind)
        with self._lock:
            coll.objects[key] = {}
            coll.raw[key] = raw
            coll.keys.append((created, key))
            coll.keys.sort()

    def add_raw_event(self, key: str, created: int, event_type: str, raw: bytes) -> None:
        """List one event's JSON text exactly as given: a malformed event for the bad-input
        tests. ``key`` stands in for its id, ``event_type`` for its type in the filters."""
        with self._lock:
            self._events.raw[key] = raw
            self._events.objects[key] = {"created": created}
            self._event_types[key] = event_type
            bisect.insort(self._events.keys, (created, key))

    def update(self, kind: str, id: str, event_type: str | None = None, **fields: Any) -> dict[str, Any]:
        """Replace top-level fields of an existing object (like Stripe's POST /v1/<kind>/<id>).

        Emits ``<object>.updated`` (or ``event_type``) with ``previous_attributes``.
        """
        coll = self._collection(kind)
        if "id" in fields and fields["id"] != id:
            raise ValueError("the id of an object cannot be changed")
        with self._lock:
            current = coll.objects.get(id)
            if current is None:
                raise KeyError(f"no such {KINDS[kind]}: {id!r}")
            stored, raw = self._prepare(kind, {**current, **fields})
            old_key = (current["created"], id)
            new_key = (stored["created"], id)
            if old_key != new_key:
                del coll.keys[bisect.bisect_left(coll.keys, old_key)]
                bisect.insort(coll.keys, new_key)
            coll.objects[id] = stored
            coll.raw[id] = raw
            previous = {k: current.get(k) for k in fields if current.get(k) != stored.get(k)}
            self._emit(event_type or f"{KINDS[kind]}.updated", raw, previous)
        return stored

    def refund_charge(
        self,
        charge_id: str,
        amount: int,
        refund_id: str | None = None,
        created: int | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """Refund (part of) a charge: creates the refund, updates the charge's
        ``amount_refunded``/``refunded`` and emits ``refund.created`` + ``charge.refunded``."""
        with self._lock:
            charge = self.get("charges", charge_id)
            if charge is None:
                raise KeyError(f"no such charge: {charge_id!r}")
            already = int(charge.get("amount_refunded") or 0)
            if amount <= 0 or already + amount > int(charge["amount"]):
                raise ValueError(f"refund of {amount} exceeds what is left on {charge_id!r}")
            refund = self.add(
                "refunds",
                {
                    "id": refund_id or f"re_{self._next_seq():012d}",
                    "object": "refund",
                    "amount": amount,
                    "charge": charge_id,
                    "currency": charge.get("currency"),
                    "created": int(self.clock()) if created is None else created,
                    "status": "succeeded",
                    "reason": None,
                    **fields,
                },
            )
            total = already + amount
            self.update(
                "charges",
                charge_id,
                event_type="charge.refunded",
                amount_refunded=total,
                refunded=total == int(charge["amount"]),
            )
        return refund

    def delete_customer(self, id: str) -> dict[str, Any]:
        """Delete a customer like ``DELETE /v1/customers/<id>``: it leaves the lists and
        ``customer.deleted`` carries ``{"id", "object": "customer", "deleted": true}``."""
        coll = self._collection("customers")
        with self._lock:
            current = coll.objects.pop(id, None)
            if current is None:
                raise KeyError(f"no such customer: {id!r}")
            del coll.raw[id]
            del coll.keys[bisect.bisect_left(coll.keys, (current["created"], id))]
            tombstone = {"id": id, "object": "customer", "deleted": True}
            self._emit("customer.deleted", orjson.dumps(tombstone))
        return tombstone

    def fail_next(self, count: int = 1, status: int = 429, retry_after: float | None = None) -> None:
        """Answer the next ``count`` authenticated requests with ``status`` (to test retries)."""
        with self._lock:
            self._faults.extend(_Fault(status, retry_after) for _ in range(count))

    def events(self, type: str | None = None) -> list[dict[str, Any]]:
        """All retained events, oldest first (optionally of one type)."""
        with self._lock:
            keys = self._retained_event_keys()
            return [
                orjson.loads(self._events.raw[oid])
                for _, oid in keys
                if type is None or self._event_types[oid] == type
            ]

    # ------------------------------------------------------------------ queries
    def count(self, kind: str) -> int:
        """Number of stored objects of ``kind``."""
        coll = self._collection(kind)
        with self._lock:
            return len(coll.objects)

    def get(self, kind: str, id: str) -> dict[str, Any] | None:
        """A copy of one object, or None."""
        coll = self._collection(kind)
        with self._lock:
            raw = coll.raw.get(id)
        return None if raw is None else orjson.loads(raw)

    def ids(self, kind: str) -> list[str]:
        """All ids in served order (newest first)."""
        coll = self._collection(kind)
        with self._lock:
            return [oid for _, oid in reversed(coll.keys)]

    def retrieve_raw(self, kind: str, id: str) -> bytes:
        """Serialized object for ``GET /v1/<kind>/<id>``."""
        coll = self._collection(kind)
        with self._lock:
            raw = coll.raw.get(id)
        if raw is None:
            raise StripeError(404, f"No such {KINDS[kind]}: '{id}'", param="id")
        return raw

    def list_raw(self, kind: str, params: dict[str, str]) -> bytes:
        """Serialized list page for ``GET /v1/<kind>`` with Stripe's list semantics."""
        coll = self._collection(kind)
        _check_params(params, _LIST_PARAMS)
        with self._lock:
            return self._page(kind, KINDS[kind], coll, coll.keys, params)

    def list_events_raw(self, params: dict[str, str], types: list[str] | None = None) -> bytes:
        """Serialized page of ``GET /v1/events``: newest first, last 30 days, type filters."""
        _check_params(params, _EVENT_PARAMS)
        if types is not None and "type" in params:
            raise StripeError(400, "You may only specify one of these parameters: type, types.")
        if types is not None and not 1 <= len(types) <= 20:
            raise StripeError(400, "types must hold 1 to 20 event types", param="types")
        with self._lock:
            keys = self._retained_event_keys()
            pattern = params.get("type")
            if pattern is not None or types is not None:
                wanted = set(types or ())
                keys = [
                    key
                    for key in keys
                    if (pattern is not None and fnmatch.fnmatchcase(self._event_types[key[1]], pattern))
                    or self._event_types[key[1]] in wanted
                ]
            return self._page("events", "event", self._events, keys, params)

    def _page(
        self, endpoint: str, obj_name: str, coll: _Collection, keys: list[_Key], params: dict[str, str]
    ) -> bytes:
        limit = _parse_int(params, "limit", DEFAULT_LIMIT)
        if not 1 <= limit <= MAX_LIMIT:
            raise StripeError(
                400,
                f"Invalid integer: {limit}. limit must be between 1 and {MAX_LIMIT}",
                param="limit",
            )
        starting_after = params.get("starting_after")
        ending_before = params.get("ending_before")
        if starting_after is not None and ending_before is not None:
            raise StripeError(
                400,
                "You may only specify one of these parameters: ending_before, starting_after.",
            )
        lo, hi = _created_range(keys, params)
        repeated = 0
        if starting_after is not None:
            # newest-first order: "after" means older, i.e. lower ascending positions
            position = _cursor_position(obj_name, coll, keys, starting_after, "starting_after")
            hi = min(hi, position)
            if self.repeat_last_item and limit > 1 and lo < hi and position < len(keys):
                hi, repeated = hi + 1, 1  # quirk: the cursor object shows up again on this page
        if ending_before is not None:
            lo = max(lo, _cursor_position(obj_name, coll, keys, ending_before, "ending_before") + 1)
        available = max(0, hi - lo)
        # before a cursor, the page is the oldest `limit` newer objects
        before = ending_before is not None
        window = keys[lo : min(hi, lo + limit)] if before else keys[max(lo, hi - limit) : hi]
        data = b",".join(coll.raw[oid] for _, oid in reversed(window))
        self.requests_served += 1
        fresh = len(window) - repeated
        more = available > limit or (self.empty_last_page and fresh > 0 and not before)
        body = b'{"object":"list","url":"/v1/%s","has_more":%s,"data":[%s]}' % (
            endpoint.encode(),
            b"true" if more else b"false",
            data,
        )
        if self.on_page is not None:
            self.on_page(endpoint, self.requests_served)
        return body

    def take_fault(self) -> _Fault | None:
        """Pop the next injected fault, if any."""
        with self._lock:
            return self._faults.pop(0) if self._faults else None

    def random_fault(self) -> str | None:
        """With probability ``fault_rate``, one of ``fault_kinds`` (seeded, so replayable)."""
        if self.fault_rate <= 0 or not self.fault_kinds:
            return None
        with self._lock:
            if self._rng.random() >= self.fault_rate:
                return None
            kind = self._rng.choice(self.fault_kinds)
            self.faults_served[kind] += 1
            return kind

    def _next_seq(self) -> int:
        with self._lock:
            self._event_seq += 1
            return self._event_seq

    def _emit(
        self, type_: str, object_raw: bytes, previous: dict[str, Any] | None = None, at: int | None = None
    ) -> None:
        """Record one event (at ``at``, default the clock); ids grow with emission order."""
        with self._lock:
            created = int(self.clock()) if at is None else at
            eid = f"evt_{self._next_seq():016d}"
            data = b'{"object":%s%s}' % (
                object_raw,
                b',"previous_attributes":' + orjson.dumps(previous) if previous else b"",
            )
            raw = (
                b'{"id":"%s","object":"event","api_version":"%s","created":%d,"data":%s,'
                % (
                    eid.encode(),
                    API_VERSION.encode(),
                    created,
                    data,
                )
                + _EVENT_TAIL % type_.encode()
            )
            self._events.raw[eid] = raw
            self._events.objects[eid] = {"created": created}
            self._event_types[eid] = type_
            key = (created, eid)
            if self._events.keys and key < self._events.keys[-1]:
                bisect.insort(self._events.keys, key)  # a clock that went back
            else:
                self._events.keys.append(key)

    def _retained_event_keys(self) -> list[_Key]:
        oldest = int(self.clock()) - EVENT_RETENTION_S
        keys = self._events.keys
        return keys[bisect.bisect_left(keys, (oldest, "")) :]

    # ---------------------------------------------------------------- internals
    def _collection(self, kind: str) -> _Collection:
        try:
            return self._collections[kind]
        except KeyError:
            raise ValueError(f"unknown kind {kind!r}; expected one of {sorted(KINDS)}") from None

    @staticmethod
    def _prepare(kind: str, obj: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
        """Validate, fill Stripe defaults and return an independent copy plus its JSON bytes."""
        oid = obj.get("id")
        created = obj.get("created")
        if not isinstance(oid, str) or not oid:
            raise TypeError(f"{KINDS[kind]} needs a non-empty string id, got {oid!r}")
        if not isinstance(created, int) or isinstance(created, bool):
            raise TypeError(f"{KINDS[kind]} {oid!r} needs an int 'created' (unix seconds), got {created!r}")
        metadata = obj.get("metadata") or {}
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise ValueError(f"{KINDS[kind]} {oid!r}: metadata keys and values must be strings")
        full = {"object": KINDS[kind], "livemode": False, **obj, "metadata": metadata}
        raw = orjson.dumps(full)
        return orjson.loads(raw), raw


def invoices_for_charges(charges: Iterable[dict[str, Any]], every: int = 10) -> list[dict[str, Any]]:
    """Demo invoices: one for every ``every``-th successful charge of a customer, paid by it."""
    invoices = []
    for n, charge in enumerate(c for c in charges if c.get("customer") and c.get("status") == "succeeded"):
        if n % every:
            continue
        amount = int(charge["amount"])
        invoices.append(
            {
                "id": "in_" + str(charge["id"]).removeprefix("ch_"),
                "object": "invoice",
                "customer": charge["customer"],
                "charge": charge["id"],
                "number": f"DEMO-{n // every + 1:05d}",
                "status": "paid",
                "billing_reason": "manual",
                "collection_method": "charge_automatically",
                "currency": charge.get("currency", "usd"),
                "amount_due": amount,
                "amount_paid": amount,
                "amount_remaining": 0,
                "subtotal": amount,
                "total": amount,
                "paid": True,
                "created": int(charge["created"]),
                "lines": {
                    "object": "list",
                    "data": [{"id": "il_" + str(charge["id"]).removeprefix("ch_"), "amount": amount}],
                    "has_more": False,
                },
                "metadata": dict(charge.get("metadata") or {}),
            }
        )
    return invoices


def _created_event_type(kind: str, obj: dict[str, Any]) -> str:
    """What Stripe emits when an object appears: a new charge is announced by its outcome."""
    if kind == "charges":
        return _NEW_CHARGE_EVENTS.get(str(obj.get("status")), "charge.succeeded")
    return f"{KINDS[kind]}.created"


def _check_params(params: dict[str, str], allowed: frozenset[str]) -> None:
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise StripeError(400, f"Received unknown parameter: {unknown[0]}", param=unknown[0])


def _cursor_position(obj_name: str, coll: _Collection, keys: list[_Key], oid: str, param: str) -> int:
    obj = coll.objects.get(oid)
    if obj is None:
        raise StripeError(400, f"No such {obj_name}: '{oid}'", param=param)
    return bisect.bisect_left(keys, (obj["created"], oid))


def _parse_int(params: dict[str, str], name: str, default: int | None = None) -> int:
    raw = params.get(name)
    if raw is None:
        if default is None:
            raise KeyError(name)
        return default
    try:
        return int(raw)
    except ValueError:
        raise StripeError(400, f"Invalid integer: {raw}", param=name) from None


def _created_range(keys: list[_Key], params: dict[str, str]) -> tuple[int, int]:
    """Ascending index range [lo, hi) of ``keys`` matching the ``created`` filters."""
    lo, hi = 0, len(keys)
    # ids are non-empty strings, so ("",) sorts before and (chr(0x10FFFF),) after any id
    low_id, high_id = "", "\U0010ffff"
    for op in ("eq", *_CREATED_OPS):
        name = "created" if op == "eq" else f"created[{op}]"
        if name not in params:
            continue
        ts = _parse_int(params, name)
        if op in ("eq", "gte"):
            lo = max(lo, bisect.bisect_left(keys, (ts, low_id)))
        if op in ("eq", "lte"):
            hi = min(hi, bisect.bisect_right(keys, (ts, high_id)))
        if op == "gt":
            lo = max(lo, bisect.bisect_right(keys, (ts, high_id)))
        if op == "lt":
            hi = min(hi, bisect.bisect_left(keys, (ts, low_id)))
    return lo, hi


class _StripeHandler(QuietHandler):
    """Routes ``GET /v1/<kind>`` and ``GET /v1/<kind>/<id>``; everything answers JSON."""

    server: Any  # a LoopbackServer carrying ``store`` and ``api_key``
    server_version = "stripe-standin/1"

    def do_GET(self) -> None:
        cut: str | None = None
        try:
            body, cut = self._route()
            status, headers = 200, None
        except StripeError as exc:
            status, body, headers = exc.status, exc.body(), exc.headers
        except Exception as exc:
            error = StripeError(500, f"internal error: {exc!r}", "api_error")
            status, body, headers = 500, error.body(), None
        if cut == "truncate":
            body = body[: len(body) // 2]  # valid status and length, broken JSON
        # the client may have given up (its timeout fired during an injected delay)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._send(status, body, headers, drop=cut == "drop")

    def _method_not_allowed(self) -> None:
        self._send(405, StripeError(405, f"Unrecognized request method: {self.command}").body())

    do_POST = do_PUT = do_PATCH = do_DELETE = _method_not_allowed

    def _route(self) -> tuple[bytes, str | None]:
        """The response body and how to cut it short (an injected fault), if at all."""
        store = self.server.store
        self._authenticate()
        fault = store.take_fault()
        if fault is not None:
            headers = {} if fault.retry_after is None else {"Retry-After": f"{fault.retry_after:g}"}
            kind = "rate_limit_error" if fault.status == 429 else "api_error"
            raise StripeError(fault.status, f"injected {fault.status}", kind, headers=headers)
        random_fault = store.random_fault()
        if random_fault == "429":
            raise StripeError(
                429,
                "Too many requests hit the API too quickly.",
                "rate_limit_error",
                headers={"Retry-After": f"{store.retry_after:g}"},
            )
        if random_fault in ("500", "502"):
            raise StripeError(int(random_fault), f"injected {random_fault}", "api_error")
        if random_fault == "timeout":
            time.sleep(store.timeout_sleep)
        cut = random_fault if random_fault in ("truncate", "drop") else None
        url = urlsplit(self.path)
        parts = [p for p in url.path.split("/") if p]
        pairs = parse_qsl(url.query, keep_blank_values=True)
        if parts == ["v1", "events"]:
            params = {k: v for k, v in pairs if not k.startswith("types[")}
            types = [v for k, v in pairs if k.startswith("types[")]
            return store.list_events_raw(params, types or None), cut
        if len(parts) in (2, 3) and parts[0] == "v1" and parts[1] in KINDS:
            if len(parts) == 3:
                return store.retrieve_raw(parts[1], parts[2]), cut
            return store.list_raw(parts[1], dict(pairs)), cut
        raise StripeError(404, f"Unrecognized request URL (GET: {url.path}).")

    def _authenticate(self) -> None:
        header = self.headers.get("Authorization", "")
        scheme, _, key = header.partition(" ")
        if not header:
            raise StripeError(
                401,
                "You did not provide an API key. You need to provide your API key in the Authorization "
                "header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
            )
        if scheme.lower() != "bearer" or key.strip() != self.server.api_key:
            raise StripeError(401, "Invalid API Key provided.")

    def _send(
        self, status: int, body: bytes, headers: dict[str, str] | None = None, drop: bool = False
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if drop:  # half of the announced body, then the connection closes
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
            return
        self.wfile.write(body)


@contextmanager
def serve_stripe(store: StripeStore, api_key: str, tls: ssl.SSLContext | None = None) -> Iterator[str]:
    """Serve ``store`` on 127.0.0.1 (free port) in a daemon thread; yield the base URL.

    With ``tls`` (a server-side context) it serves HTTPS. The server is shut down and its
    socket closed when the block exits.
    """
    if not api_key:
        raise ValueError("api_key must be a non-empty string")
    server = LoopbackServer(_StripeHandler, tls, store=store, api_key=api_key)
    with serving(server):
        yield server.base_url
