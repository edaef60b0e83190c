"""dlt source for Stripe `customers`, `charges`, `refunds`, `invoices` and the `events` feed.

Each object table is merged on `id`. The first sync lists every object by `created`;
later syncs apply the changes from `GET /v1/events` (each event's `data.object` is the
object's new state, applied oldest first so the last change wins; `*.deleted` removes
the row through dlt's `hard_delete` hint). The events themselves land in `events`.
Pages are parsed with orjson and yielded as Arrow tables with declared types.
See README.md for the design.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from datetime import timedelta
from typing import Any

import dlt
import pyarrow as pa
from dlt.sources import DltResource

from dlt_sources.common.arrow import quiet_expected_hint_warnings
from dlt_sources.common.lineage import Origin, api_namespace
from dlt_sources.common.rejects import MAX_STRING_BYTES, Quarantine
from dlt_sources.errors import SourceError
from dlt_sources.spec import FreshnessSla, SourceSpec

from . import cursor as events_cursor
from . import settings
from .columns import COLUMNS, PRIVACY, event_rows, to_arrow
from .helpers import StripeClient

__all__ = ["SPEC", "StripeClient", "stripe_source"]

logger = logging.getLogger(__name__)

CHUNK_ROWS = 10_000
"""Rows per Arrow table handed to dlt (full reads and changes from the events feed)."""


def _now() -> float:
    """Wall clock of the client (tests move it to simulate a cursor older than 30 days)."""
    return time.time()


def _chunks(rows: list[dict[str, Any]], size: int = CHUNK_ROWS) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def _batched(pages: Iterable[list[dict[str, Any]]], size: int = CHUNK_ROWS) -> Iterator[list[dict[str, Any]]]:
    """Pages joined into batches of about ``size`` rows."""
    batch: list[dict[str, Any]] = []
    for page in pages:
        batch.extend(page)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


@dlt.source(name="stripe", section="stripe", max_table_nesting=0)
def stripe_source(
    api_key: str = dlt.secrets.value,
    base_url: str = settings.DEFAULT_BASE_URL,
    page_size: int = settings.PAGE_SIZE,
    initial_created: int = settings.INITIAL_CREATED,
    request_timeout: float = settings.REQUEST_TIMEOUT,
    max_retries: int = settings.MAX_RETRIES,
    backoff_factor: float = settings.BACKOFF_FACTOR,
    schema_policy: str = settings.SCHEMA_POLICY,
    bad_records: str = "quarantine",
    max_string_bytes: int = MAX_STRING_BYTES,
    ca_bundle: str | None = None,
    allow_insecure_http: bool = False,
) -> list[DltResource]:
    """Stripe objects as merge resources kept current through the events feed.

    Config lives under `sources.stripe` (env `SOURCES__STRIPE__API_KEY`,
    `SOURCES__STRIPE__BASE_URL`, ...). `initial_created` (unix seconds) bounds the
    first (full) sync; `schema_policy` (evolve | freeze | discard) decides what a field
    that changes type does; `bad_records` (quarantine | fail) what an object that cannot
    load faithfully does (see `dlt_sources.common.rejects`). `ca_bundle` (a CA file that
    the API's certificate is verified against) and `allow_insecure_http` are checked by
    the shared client (`dlt_sources.common.http`).
    """
    if not 1 <= page_size <= settings.MAX_PAGE_SIZE:
        raise ValueError(f"page_size must be 1..{settings.MAX_PAGE_SIZE}, got {page_size}")
    policy = (schema_policy or "").strip().lower()
    if policy not in settings.SCHEMA_POLICIES:
        raise SourceError(
            f"stripe source: `{settings.SCHEMA_POLICY_SETTING}` must be one of "
            f"{', '.join(settings.SCHEMA_POLICIES)}, got {schema_policy!r}."
        )
    quarantines = {name: Quarantine("stripe", bad_records, max_string_bytes) for name in settings.TABLES}

    def client() -> StripeClient:
        return StripeClient(
            api_key,
            base_url,
            timeout=request_timeout,
            max_retries=max_retries,
            backoff_factor=backoff_factor,
            ca_bundle=ca_bundle,
            allow_insecure_http=allow_insecure_http,
        )

    # Fail fast on an empty key, a malformed or plain-http URL, a missing CA file before any resource runs.
    client().close()

    def read_events(
        api: StripeClient, since: int | None, types: tuple[str, ...] | None
    ) -> list[dict[str, Any]]:
        params: dict[str, Any] = {}
        if since:
            params["created[gte]"] = since
        if types:
            params["types[]"] = list(types)
        pages = api.paginate("events", params, page_size)
        return list(events_cursor.checked(event for page in pages for event in page))

    def high_water_mark(api: StripeClient, types: tuple[str, ...]) -> events_cursor.Cursor:
        """Cursor at the newest matching event, taken *before* a full read: a change made
        while the objects are being listed is newer, so the next sync applies it."""
        read_at = _now()
        pages = api.paginate("events", {"types[]": list(types)}, page_size)
        newest_first = events_cursor.checked(event for page in pages for event in page)
        # Every event of the newest second goes into `ids` (reading stops at the first
        # older one): an id left out would be applied, and its object reloaded, next sync.
        return events_cursor.high_water_mark(newest_first, read_at)

    def objects(endpoint: str) -> Iterator[pa.Table]:
        object_name = settings.OBJECTS[endpoint]
        types = settings.EVENT_TYPES[endpoint]
        state = dlt.current.resource_state()
        cursor: events_cursor.Cursor | None = state.get("events_cursor")
        quarantine = quarantines[endpoint]
        quarantine.take()  # nothing left over from a failed run in this process
        with client() as api:
            expired = cursor is not None and events_cursor.is_expired(
                cursor, _now(), settings.EVENT_RETENTION_S, settings.EVENT_RETENTION_MARGIN_S
            )
            if cursor is None or expired:
                if expired:
                    logger.warning(
                        "stripe source: the events cursor of `%s` was last read at %s, longer ago than "
                        "Stripe keeps events (30 days); re-reading every %s by `created` instead. "
                        "Objects deleted in the gap stay in the raw table until a full refresh.",
                        endpoint,
                        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(cursor["read_at"])),
                        object_name,
                    )
                new_cursor = high_water_mark(api, types)
                params = {"created[gte]": initial_created} if initial_created else {}
                # dlt spends ~10 ms per yielded table: hand it thousands of rows at a time
                for rows in _batched(api.paginate(endpoint, params, page_size)):
                    yield from _with_rows(to_arrow(endpoint, rows, policy, quarantine))
                state["full_reads"] = int(state.get("full_reads", 0)) + 1
            else:
                read_at = _now()
                applied = events_cursor.new_events(read_events(api, cursor["created"], types), cursor)
                changes = events_cursor.latest_states(applied, object_name)
                rows = [
                    state_ if state_ is not None else {"id": oid, "object": object_name, "deleted": True}
                    for oid, state_ in changes.items()
                ]
                for chunk in _chunks(rows):
                    yield from _with_rows(to_arrow(endpoint, chunk, policy, quarantine))
                new_cursor = events_cursor.advance(cursor, applied, read_at)
        rejected = quarantine.item()
        if rejected is not None:
            yield rejected
        # only reached when every page was read: a failed sync keeps the old cursor
        state["events_cursor"] = new_cursor

    def events() -> Iterator[pa.Table]:
        state = dlt.current.resource_state()
        cursor: events_cursor.Cursor | None = state.get("events_cursor")
        now = _now()
        if cursor is not None and events_cursor.is_expired(
            cursor, now, settings.EVENT_RETENTION_S, settings.EVENT_RETENTION_MARGIN_S
        ):
            logger.warning(
                "stripe source: the `events` cursor is older than Stripe's 30-day retention; "
                "events in the gap are lost, loading every event Stripe still has."
            )
            cursor = None
        quarantine = quarantines["events"]
        quarantine.take()
        with client() as api:
            applied = events_cursor.new_events(read_events(api, cursor and cursor["created"], None), cursor)
            for chunk in _chunks(event_rows(applied)):
                yield from _with_rows(to_arrow("events", chunk, policy, quarantine))
        rejected = quarantine.item()
        if rejected is not None:
            yield rejected
        state["events_cursor"] = events_cursor.advance(cursor, applied, now)

    quiet_expected_hint_warnings(settings.TABLES)
    contract = {"data_type": settings.SCHEMA_POLICIES[policy]}
    resources = [
        quarantines[endpoint].attach_to(
            dlt.resource(
                objects,
                name=endpoint,
                write_disposition="merge",
                primary_key="id",
                columns=COLUMNS[endpoint],
                schema_contract=contract,
            )(endpoint)
        )
        for endpoint in settings.ENDPOINTS
    ]
    resources.append(
        quarantines["events"].attach_to(
            dlt.resource(
                events,
                name="events",
                write_disposition="merge",
                primary_key="id",
                columns=COLUMNS["events"],
                schema_contract=contract,
            )()
        )
    )
    return resources


def _with_rows(table: pa.Table) -> Iterator[pa.Table]:
    """The table, unless every record of it was set aside: an empty load file is refused by
    some warehouses' load APIs (the BigQuery emulator answered an empty jsonl upload with 308)."""
    if table.num_rows:
        yield table


def lineage_origin() -> Origin:
    """Each table's list endpoint (``/v1/charges`` …) under the configured base URL."""
    base_url = dlt.config.get("sources.stripe.base_url") or settings.DEFAULT_BASE_URL
    return Origin(api_namespace(base_url), {table: f"/v1/{table}" for table in settings.TABLES})


SPEC = SourceSpec(
    name="stripe",
    factory=stripe_source,
    tables=settings.TABLES,
    schedule="20 * * * *",
    origin="Stripe's REST API (/v1/charges, customers, invoices, refunds; kept current through /v1/events)",
    freshness=FreshnessSla(default=timedelta(hours=6)),
    lineage=lineage_origin,
    privacy=PRIVACY,
)
