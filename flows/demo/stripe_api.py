"""Local HTTP stand-in for the parts of Stripe's public API that the dlt source reads.

Why: the demo and the tests must run offline and deterministically, yet exercise the
real HTTP code path of ``dlt_sources.stripe`` (auth, cursor pagination, ``created``
filters, error shapes). Only ``GET`` list/retrieve endpoints for ``customers``,
``charges`` and ``refunds`` are implemented, following Stripe's documented semantics:

* lists are newest first (``created`` desc, ``id`` desc as tiebreak);
* ``limit`` 1..100 (default 10), ``starting_after`` / ``ending_before`` object-id cursors;
* ``created`` filters: ``created=<ts>`` and ``created[gt|gte|lt|lte]=<ts>``;
* errors are ``{"error": {"type": ..., "message": ...}}`` with 400/401/404 statuses.

Stdlib ``ThreadingHTTPServer`` only; bodies are assembled from cached orjson bytes so
that a thousand 100-object pages are served in a few seconds.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson

KINDS: dict[str, str] = {
    "customers": "customer",
    "charges": "charge",
    "refunds": "refund",
}
"""List endpoint name -> Stripe ``object`` value."""

DEFAULT_LIMIT = 10
MAX_LIMIT = 100
_CREATED_OPS = ("gt", "gte", "lt", "lte")
_LIST_PARAMS = frozenset(
    {"limit", "starting_after", "ending_before", "created"} | {f"created[{op}]" for op in _CREATED_OPS}
)

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

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._collections: dict[str, _Collection] = {kind: _Collection() for kind in KINDS}
        self._faults: list[_Fault] = []
        # list pages answered; lets tests prove the filtering happens server-side
        self.requests_served = 0

    # ----------------------------------------------------------------- mutation
    def add(self, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Add one object; returns the stored copy (with defaults filled in)."""
        return self.extend(kind, [obj])[0]

    def extend(self, kind: str, objs: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """Add many objects at once; re-sorts the index once instead of per insert."""
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
        return [stored for stored, _ in prepared]

    def update(self, kind: str, id: str, **fields: Any) -> dict[str, Any]:
        """Replace top-level fields of an existing object (like Stripe's POST /v1/<kind>/<id>)."""
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
        return stored

    def fail_next(self, count: int = 1, status: int = 429, retry_after: float | None = None) -> None:
        """Answer the next ``count`` authenticated requests with ``status`` (to test retries)."""
        with self._lock:
            self._faults.extend(_Fault(status, retry_after) for _ in range(count))

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
        unknown = sorted(set(params) - _LIST_PARAMS)
        if unknown:
            raise StripeError(400, f"Received unknown parameter: {unknown[0]}", param=unknown[0])
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

        with self._lock:
            lo, hi = _created_range(coll.keys, params)
            if starting_after is not None:
                # newest-first order: "after" means older, i.e. lower ascending positions
                hi = min(
                    hi,
                    self._cursor_position(kind, coll, starting_after, "starting_after"),
                )
            if ending_before is not None:
                lo = max(
                    lo,
                    self._cursor_position(kind, coll, ending_before, "ending_before") + 1,
                )
            available = max(0, hi - lo)
            if ending_before is not None:
                # the page sits right before the cursor: the oldest `limit` newer objects
                window = coll.keys[lo : min(hi, lo + limit)]
            else:
                window = coll.keys[max(lo, hi - limit) : hi]
            data = b",".join(coll.raw[oid] for _, oid in reversed(window))
            self.requests_served += 1
        has_more = b"true" if available > limit else b"false"
        return b'{"object":"list","url":"/v1/%s","has_more":%s,"data":[%s]}' % (
            kind.encode(),
            has_more,
            data,
        )

    def take_fault(self) -> _Fault | None:
        """Pop the next injected fault, if any."""
        with self._lock:
            return self._faults.pop(0) if self._faults else None

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

    @staticmethod
    def _cursor_position(kind: str, coll: _Collection, oid: str, param: str) -> int:
        obj = coll.objects.get(oid)
        if obj is None:
            raise StripeError(400, f"No such {KINDS[kind]}: '{oid}'", param=param)
        return bisect.bisect_left(coll.keys, (obj["created"], oid))


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


class _StripeHTTPServer(ThreadingHTTPServer):
    """Carries the store and expected key to the handlers."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, store: StripeStore, api_key: str) -> None:
        super().__init__(("127.0.0.1", 0), _StripeHandler)
        self.store = store
        self.api_key = api_key


class _StripeHandler(BaseHTTPRequestHandler):
    """Routes ``GET /v1/<kind>`` and ``GET /v1/<kind>/<id>``; everything answers JSON."""

    server: _StripeHTTPServer
    protocol_version = "HTTP/1.1"  # keep-alive: requests.Session reuses one connection
    # headers and body go out in two writes; without TCP_NODELAY, Nagle + delayed ACK
    # add ~40 ms to every keep-alive response
    disable_nagle_algorithm = True
    server_version = "stripe-standin/1"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        """Silence per-request stderr lines."""

    def do_GET(self) -> None:
        try:
            self._send(200, self._route())
        except StripeError as exc:
            self._send(exc.status, exc.body(), exc.headers)
        except Exception as exc:
            self._send(500, StripeError(500, f"internal error: {exc!r}", "api_error").body())

    def _method_not_allowed(self) -> None:
        self._send(405, StripeError(405, f"Unrecognized request method: {self.command}").body())

    do_POST = do_PUT = do_PATCH = do_DELETE = _method_not_allowed

    def _route(self) -> bytes:
        store = self.server.store
        self._authenticate()
        fault = store.take_fault()
        if fault is not None:
            headers = {} if fault.retry_after is None else {"Retry-After": f"{fault.retry_after:g}"}
            kind = "rate_limit_error" if fault.status == 429 else "api_error"
            raise StripeError(fault.status, f"injected {fault.status}", kind, headers=headers)
        url = urlsplit(self.path)
        parts = [p for p in url.path.split("/") if p]
        if len(parts) in (2, 3) and parts[0] == "v1" and parts[1] in KINDS:
            if len(parts) == 3:
                return store.retrieve_raw(parts[1], parts[2])
            params = dict(parse_qsl(url.query, keep_blank_values=True))
            return store.list_raw(parts[1], params)
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

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


@contextmanager
def serve_stripe(store: StripeStore, api_key: str) -> Iterator[str]:
    """Serve ``store`` on 127.0.0.1 (free port) in a daemon thread; yield the base URL.

    The server is shut down and its socket closed when the block exits.
    """
    if not api_key:
        raise ValueError("api_key must be a non-empty string")
    server = _StripeHTTPServer(store, api_key)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
