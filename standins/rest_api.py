"""Local HTTP stand-in for a helpdesk "tickets" API, read by ``dlt_sources/rest/example_tickets.yml``.

Why: the declarative REST source, its tests and ``make bench`` need a real HTTP server
on 127.0.0.1 that behaves like a typical SaaS list endpoint and can serve a million
records faster than any client reads them. The API:

* ``GET /api/v2/tickets?limit=&cursor=&updated_since=`` with ``Authorization: Bearer <token>``
  (401 otherwise); ``limit`` 1..1000 (default 100);
* tickets ordered by ``updated_at`` ascending (ties broken by the order of writes);
  ``updated_since`` (ISO 8601, inclusive) filters server-side;
* cursor pagination: the body is ``{"data": [...], "next_cursor": "<opaque>" | null}``.

Data: ticket ``i`` of the initial ``n`` is generated from ``i`` alone (~300 bytes of
JSON with a nested ``requester`` object and a ``tags`` list), so nothing is held in
memory until a page is asked for; page bodies are cached once built. Changes
(:meth:`TicketStore.upsert`) go to an append-only log, like a real "updated since" feed.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson

from standins.loopback import LoopbackServer, QuietHandler, serving

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z: the initial tickets' first updated_at, unless given
TIES = 2  # initial tickets share an updated_at second in pairs: exercises the cursor dedup
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
PATH = "/api/v2/tickets"
_STATUSES = ("new", "open", "pending", "solved", "closed")
_PRIORITIES = ("low", "normal", "high", "urgent")
_TAGS = ("billing", "bug", "refund", "login", "shipping", "feature", "vip")


def iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(value: str) -> float:
    """Epoch seconds of an ISO 8601 timestamp (``Z`` or offset; naive means UTC)."""
    when = datetime.fromisoformat(value.strip().replace(" ", "+"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def ticket(i: int, t0: int = T0) -> dict[str, Any]:
    """Initial ticket ``i``: deterministic, ~300 bytes as JSON."""
    updated = t0 + i // TIES
    return {
        "id": i + 1,
        "subject": f"Ticket {i + 1}: cannot complete checkout step {i % 7}",
        "status": _STATUSES[i % 5],
        "priority": _PRIORITIES[i % 4],
        "requester": {"id": 1000 + i % 5000, "email": f"user{i % 5000}@example.com"},
        "tags": [_TAGS[i % 7], _TAGS[(i // 7) % 7]],
        "comments_count": i % 13,
        "created_at": iso(updated - 86_400),
        "updated_at": iso(updated),
        "description": f"Customer {i % 5000} reports an error on order {100_000 + i}.",
    }


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status

    def body(self) -> bytes:
        return orjson.dumps({"error": {"status": self.status, "message": self.message}})

    @property
    def message(self) -> str:
        return str(self.args[0])


class TicketStore:
    """``n`` generated tickets plus an append-only log of created/changed ones.

    Positions ``0..n-1`` are the initial tickets, ``n + j`` is entry ``j`` of the log;
    a ticket that was changed later is skipped at its older positions. A cursor is a
    position, so paging stays stable while changes are appended.
    """

    def __init__(self, n: int, t0: int = T0) -> None:
        self.n = n
        self.t0 = t0
        self._lock = threading.Lock()
        self._log: list[tuple[float, int, bytes]] = []  # (updated_at epoch, id, body)
        self._latest: dict[int, int] = {}  # id -> position of its current version
        self._pages: dict[tuple[int, int], bytes] = {}
        self.requests_served = 0

    def upsert(self, tickets: Iterable[dict[str, Any]]) -> None:
        """Add new tickets or new versions; ``updated_at`` must not go back in time."""
        with self._lock:
            for item in tickets:
                updated = parse_iso(item["updated_at"])
                if (self._log and updated < self._log[-1][0]) or updated < self.t0 + (self.n - 1) // TIES:
                    raise ValueError("upserted tickets must be at least as recent as every other ticket")
                self._latest[int(item["id"])] = self.n + len(self._log)
                self._log.append((updated, int(item["id"]), orjson.dumps(item)))
            self._pages.clear()

    def upsert_raw(self, updated_at: str, key: int, body: bytes) -> None:
        """Append one record's JSON text exactly as given: a malformed record an API might send
        (no id, invalid UTF-8, a huge number) for the bad-input tests. ``key`` stands in for
        its id in the change log; ``updated_at`` must not go back in time."""
        with self._lock:
            self._latest[key] = self.n + len(self._log)
            self._log.append((parse_iso(updated_at), key, body))
            self._pages.clear()

    def count(self) -> int:
        """Distinct tickets."""
        return self.n + sum(1 for tid in self._latest if tid > self.n)

    def _start(self, since: float | None) -> int:
        if since is None:
            return 0
        seconds = since - self.t0
        first = 0 if seconds <= 0 else -(-int(seconds * 1_000_000) // 1_000_000) * TIES
        if first < self.n:
            return first
        return self.n + bisect.bisect_left(self._log, since, key=lambda entry: entry[0])

    def _body(self, position: int) -> bytes | None:
        """The current JSON of the ticket at ``position``, or None if superseded."""
        if position < self.n:
            if position + 1 in self._latest:
                return None
            return orjson.dumps(ticket(position, self.t0))
        _, tid, body = self._log[position - self.n]
        return body if self._latest[tid] == position else None

    def page(self, params: dict[str, str]) -> bytes:
        """One list page body for the query ``params``."""
        unknown = sorted(set(params) - {"limit", "cursor", "updated_since"})
        if unknown:
            raise ApiError(400, f"unknown parameter {unknown[0]!r}")
        try:
            limit = int(params.get("limit", DEFAULT_LIMIT))
            since = parse_iso(params["updated_since"]) if "updated_since" in params else None
            cursor = int(params["cursor"]) if "cursor" in params else 0
        except ValueError as exc:
            raise ApiError(400, f"invalid parameter: {exc}") from None
        if not 1 <= limit <= MAX_LIMIT:
            raise ApiError(400, f"limit must be 1..{MAX_LIMIT}")
        with self._lock:
            self.requests_served += 1
            start = max(cursor, self._start(since))
            key = (start, limit)
            cached = self._pages.get(key)
            if cached is not None:
                return cached
            total = self.n + len(self._log)
            bodies: list[bytes] = []
            position = start
            while position < total and len(bodies) < limit:
                body = self._body(position)
                if body is not None:
                    bodies.append(body)
                position += 1
            next_cursor = orjson.dumps(str(position) if position < total else None)
            page = b'{"data":[' + b",".join(bodies) + b'],"next_cursor":' + next_cursor + b"}"
            self._pages[key] = page
            return page


def _handler(store: TicketStore, token: str) -> type[BaseHTTPRequestHandler]:
    expected = f"Bearer {token}"

    class Handler(QuietHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            try:
                if self.headers.get("Authorization") != expected:
                    raise ApiError(401, "invalid or missing bearer token")
                if url.path.rstrip("/") != PATH:
                    raise ApiError(404, f"no such endpoint {url.path}")
                self._send(200, store.page(dict(parse_qsl(url.query))))
            except ApiError as exc:
                self._send(exc.status, exc.body())

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


@contextmanager
def serve_tickets(store: TicketStore, token: str) -> Iterator[str]:
    """Serve ``store`` on a free port of 127.0.0.1; yields the base URL (ends in ``/api/v2``)."""
    server = LoopbackServer(_handler(store, token))
    with serving(server):
        yield f"{server.base_url}/api/v2"
