"""Declarative REST sources: one YAML file per API in ``dlt_sources/rest/``, no Python.

Each ``<name>.yml`` (dlt ``rest_api`` config shape, subset in README.md) becomes a dlt
source ``<name>`` that loads ``raw_<name>``. The resources are built here rather than by
``dlt.sources.rest_api``, for speed: pages are fetched with the shared
:class:`~dlt_sources.common.http.ApiClient` (retries, backoff, Retry-After, errors that
name the setting), decoded once and yielded as Arrow tables, which skip dlt's row-by-row
normalizer (nested objects become JSON columns). A resource that declares its
``columns`` decodes its pages with msgspec into typed structs (typed_pages.py); a page
that does not fit the declaration, or an undeclared resource, is decoded with orjson. An incremental
cursor is sent as a request parameter and also filtered in Arrow by dlt. Records that cannot
load faithfully (no key, bad UTF-8, an integer beyond 64 bits, a timestamp outside years
1-9999, an oversized string) go to ``_rejected_records`` or fail the run, per
``sources.<name>.bad_records`` (common/rejects.py).

``ELT_REST_SOURCES_DIR`` points the loader at another folder (tests, deployments).
"""

# No `from __future__ import annotations`: dlt binds the incremental argument of a
# resource function by resolving its annotation at runtime.
import base64
import gc
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any

import dlt
import pyarrow as pa
import requests
from dlt.extract.source import DltSource

from dlt_sources.common.arrow import quiet_expected_hint_warnings, records_to_arrow
from dlt_sources.common.background import read_ahead
from dlt_sources.common.declared import declared_in
from dlt_sources.common.http import ApiClient, SourceSettings, transport_settings
from dlt_sources.common.lineage import Origin, api_namespace
from dlt_sources.common.rejects import CastFlags, Quarantine, configured, tolerant_loads
from dlt_sources.common.schema_policy import enforce
from dlt_sources.spec import SourceSpec

from .config import PLACEHOLDER_RE, Resource, RestConfigError, RestSourceConfig, load_file
from .config import resolve_placeholders as _resolve
from .paginators import Paginator, get_path, make_paginator
from .typed_pages import PageDecoder, TypedPage

__all__ = ["RestConfigError", "declared_sources", "load_file", "rest_source", "sources_dir"]

DEFAULT_DIR = Path(__file__).resolve().parent
SOURCES_DIR_ENV = "ELT_REST_SOURCES_DIR"
BATCH_ROWS = 50_000  # rows per Arrow table handed to dlt
PREFETCH_PAGES = 4  # pages fetched ahead of the one being written

_ARROW_TYPES: dict[str, pa.DataType] = {
    "text": pa.string(),
    "bigint": pa.int64(),
    "double": pa.float64(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "date": pa.date32(),
    "json": pa.string(),
}


def sources_dir() -> Path:
    return Path(os.environ.get(SOURCES_DIR_ENV) or DEFAULT_DIR)


def declared_sources(directory: Path | None = None) -> dict[str, SourceSpec]:
    """Source name -> registry record, one per ``*.yml`` in the folder; every file is validated now.

    Secrets are resolved only when a record's factory is called, so listing sources needs none.
    """
    return declared_in(
        directory or sources_dir(), SOURCES_DIR_ENV, load_file, rest_source, RestConfigError, lineage_origin
    )


def lineage_origin(config: RestSourceConfig) -> Origin:
    """Each resource's endpoint path under the API's base URL (placeholders resolved, no secret)."""
    base_url = _resolve(config.client["base_url"], str(config.file))
    return Origin(
        api_namespace(base_url),
        {resource.name: "/" + resource.path.lstrip("/") for resource in config.resources},
    )


def _setting_of(value: Any) -> str | None:
    """The dlt setting a ``{{ … }}`` placeholder names, for error hints."""
    match = PLACEHOLDER_RE.search(value) if isinstance(value, str) else None
    return match.group(2) if match else None


def _client_factory(config: RestSourceConfig) -> Callable[[], ApiClient]:
    """Resolve placeholders once and return a factory of configured clients."""
    where = str(config.file)
    raw = config.client
    client = _resolve(raw, where)
    headers = dict(client.get("headers") or {})
    query: dict[str, str] = {}
    secrets: list[str] = []
    auth = client.get("auth")
    if auth:
        kind = auth["type"]
        if kind == "bearer":
            headers["Authorization"] = f"Bearer {auth['token']}"
            secrets.append(auth["token"])
        elif kind == "api_key":
            secrets.append(auth["api_key"])
            name = auth.get("name", "Authorization")
            if auth.get("location", "header") == "query":
                query[name] = auth["api_key"]
            else:
                headers[name] = auth["api_key"]
        else:
            pair = f"{auth['username']}:{auth['password']}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
            secrets.append(auth["password"])
    raw_auth = raw.get("auth") or {}
    credential = next(
        (s for s in map(_setting_of, raw_auth.values()) if s), f"{config.file.name}: client.auth"
    )
    names = SourceSettings(
        source=config.name,
        credential_setting=credential,
        base_url_setting=_setting_of(raw["base_url"]) or f"{config.file.name}: client.base_url",
    )

    transport = transport_settings(config.name)

    def make() -> ApiClient:
        api = ApiClient(client["base_url"], names, headers=headers, secrets=secrets, **transport)
        api.auth_query = query  # type: ignore[attr-defined]
        _pin_environment(api.session, api.base_url)
        return api

    make()  # fail fast on a malformed base URL, before any resource runs
    return make


def _pin_environment(session: requests.Session, base_url: str) -> None:
    """Read proxy and CA-bundle settings from the environment once, not on every request.

    Why: with ``trust_env`` requests rescans ``os.environ`` for proxies on each call
    (~0.6 s per 1,000 pages here). The same settings apply: ``HTTP(S)_PROXY`` honouring
    ``NO_PROXY`` for this API's host, and ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` (which
    ``sources.<name>.ca_bundle`` overrides). Only ``.netrc`` credentials are no longer picked
    up; a declared source sets its auth itself.
    """
    session.proxies.update(requests.utils.get_environ_proxies(base_url))
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        session.verify = bundle
    session.trust_env = False


def _selected(body: Any, selector: str | None, where: str) -> list[dict[str, Any]]:
    """The records of one page: ``data_selector``, else the body or its only list field."""
    if selector is not None:
        records = get_path(body, selector)
    elif isinstance(body, list):
        records = body
    else:
        lists = [v for v in body.values() if isinstance(v, list)] if isinstance(body, dict) else []
        if len(lists) != 1:
            raise RestConfigError(
                f"{where}: cannot tell which field of the response holds the records; "
                "set endpoint.data_selector"
            )
        records = lists[0]
    if records is None:
        return []
    if isinstance(records, dict):
        return [records]
    if not isinstance(records, list):
        raise RestConfigError(f"{where}: data_selector {selector!r} does not point at a list of records")
    return records


def _param_value(value: Any) -> Any:
    """A cursor value as a query parameter (ISO 8601 for datetimes)."""
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    return value


def _coerce_initial(value: Any, data_type: str | None) -> Any:
    """The YAML's initial/end value in the cursor column's Arrow type."""
    if value is None or data_type not in ("timestamp", "date"):
        return value
    from dlt.common.time import ensure_pendulum_date, ensure_pendulum_datetime

    return ensure_pendulum_datetime(value) if data_type == "timestamp" else ensure_pendulum_date(value)


def _fits_declared(inferred: pa.DataType, declared: str | None) -> bool:
    """Whether an inferred Arrow type is what a JSON value of the declared type becomes."""
    if declared is None or declared == "json" or pa.types.is_null(inferred):
        return True
    if declared in ("text", "timestamp", "date"):
        return pa.types.is_string(inferred) or pa.types.is_large_string(inferred)
    if declared == "bigint":
        return pa.types.is_integer(inferred)
    if declared in ("double", "decimal"):
        return pa.types.is_integer(inferred) or pa.types.is_floating(inferred)
    if declared == "bool":
        return pa.types.is_boolean(inferred)
    return True


def _cast(table: pa.Table, types: dict[str, pa.DataType], flags: CastFlags | None = None) -> pa.Table:
    """Cast columns to their declared types (e.g. ISO strings to timestamps); with ``flags`` a
    value that does not cast ('infinity', year 10000) is nulled and flagged for the quarantine."""
    for name, wanted in types.items():
        index = table.schema.get_field_index(name)
        if index < 0:
            continue
        column = table.column(index)
        if column.type != wanted:
            cast = flags.cast(name, column, wanted) if flags is not None else column.cast(wanted)
            table = table.set_column(index, name, cast)
    return table


GC_GEN0_THRESHOLD = 100_000


class _GcState:
    lock = threading.Lock()
    users = 0
    saved: tuple[int, int, int] = (700, 10, 10)


@contextmanager
def _fewer_gc_passes() -> Iterator[None]:
    """Raise the garbage collector's gen-0 threshold while pages are decoded.

    Why: a decoded page is thousands of new dicts and lists that live only until
    they are converted to Arrow; at the default threshold (700) the collector scans
    each of them several times (it measured ~40% of decode time). Reference cycles
    are still collected, only in larger, rarer passes. Shared by concurrent
    resources; the previous thresholds come back when the last one finishes.
    """
    state = _GcState
    with state.lock:
        if state.users == 0:
            state.saved = gc.get_threshold()
            gc.set_threshold(max(GC_GEN0_THRESHOLD, state.saved[0]), *state.saved[1:])
        state.users += 1
    try:
        yield
    finally:
        with state.lock:
            state.users -= 1
            if state.users == 0:
                gc.set_threshold(*state.saved)


def _batched(tables: Iterator[pa.Table], rows: int) -> Iterator[pa.Table]:
    """Concatenate page tables into batches of at least ``rows`` rows.

    Why: dlt spends milliseconds per yielded item (hint validation, schema merge),
    which at 1,000-record pages costs more than converting the page.
    """
    pending: list[pa.Table] = []
    count = 0
    for table in tables:
        pending.append(table)
        count += table.num_rows
        if count >= rows:
            yield pa.concat_tables(pending, promote_options="default")
            pending, count = [], 0
    if pending:
        yield pa.concat_tables(pending, promote_options="default")


DEDUPLICATED_HINT = "x-stage-data-deduplicated"


def _declare_deduplicated(batches: Iterator[pa.Table], keys: list[str]) -> Iterator[Any]:
    """``batches``, the last one marked with whether the primary key was unique in the run.

    Why: a merge otherwise de-duplicates the staging table by primary key with a
    ``ROW_NUMBER()`` window in the destination, which at a million rows was ~1 s of the
    load and ~850 MB of DuckDB memory (the peak of the whole run). When every primary
    key arrived once (checked here in Arrow, ~0.1 s at a million rows) dlt's
    ``x-stage-data-deduplicated`` hint skips that window; when any key repeats (a
    record updated while we paged) the hint is set to False and dlt de-duplicates as
    before. Set on every run that yields rows, so a True from an earlier run (kept in
    the stored schema) never outlives it. The check runs before dlt's incremental
    filter, which only drops rows, so it is conservative.
    """
    seen: list[pa.Table] | None = []
    previous: pa.Table | None = None
    for batch in batches:
        if previous is not None:
            yield previous
        if seen is not None:
            if all(name in batch.column_names for name in keys):
                seen.append(batch.select(keys))
            else:  # a batch without its key: let dlt decide (and fail) as before
                seen = None
        previous = batch
    if previous is None:
        return
    unique = False
    if seen is not None:
        ids = pa.concat_tables(seen, promote_options="default")
        unique = ids.group_by(keys).aggregate([]).num_rows == ids.num_rows
    hints = dlt.mark.make_hints(additional_table_hints={DEDUPLICATED_HINT: unique})
    yield dlt.mark.with_hints(previous, hints)


def _pages(
    make_client: Callable[[], ApiClient],
    resource: Resource,
    paginator: Paginator,
    params: dict[str, Any],
    decoder: PageDecoder | None,
) -> Iterator[list[dict[str, Any]] | TypedPage]:
    """Every page of one endpoint: typed when ``decoder`` takes it, else its list of records."""
    where = f"{resource.name} ({resource.path})"
    decode = decoder.decode if decoder is not None else tolerant_loads
    with make_client() as client:
        auth_query: dict[str, str] = client.auth_query  # type: ignore[attr-defined]
        url, query = paginator.first(resource.path, {**params, **auth_query})
        while True:
            sent = query if query is not None else auth_query or None
            response, body = client.get(url, sent, decode=decode)
            if isinstance(body, TypedPage):
                page: list[dict[str, Any]] | TypedPage = body
                n, body = len(body.records), body.body
            else:
                page = _selected(body, resource.data_selector, where)
                n = len(page)
            if n:
                yield page
            following = paginator.advance(url, query, response, body, n)
            if following is None:
                return
            url, query = following


def _make_resource(config: RestSourceConfig, resource: Resource, make_client: Callable[[], ApiClient]) -> Any:
    columns = resource.columns
    json_columns = tuple(name for name, hints in columns.items() if hints["data_type"] == "json")
    types = {
        name: _ARROW_TYPES[hints["data_type"]]
        for name, hints in columns.items()
        if hints["data_type"] != "json"
    }
    base_params = {k: _param_value(v) for k, v in resource.params.items()}
    client_paginator = config.client.get("paginator")
    if isinstance(client_paginator, str):
        client_paginator = {"type": client_paginator}
    dlt_columns = {
        name: {key: hints[key] for key in ("data_type", "nullable") if key in hints}
        for name, hints in columns.items()
    }

    declared = {name: hints["data_type"] for name, hints in columns.items()}
    paginator_spec = resource.paginator or client_paginator
    decoder = PageDecoder.for_resource(
        declared, resource.data_selector, make_paginator(paginator_spec).body_paths()
    )

    key_columns = [key] if isinstance((key := resource.primary_key), str) else list(key or [])
    int_columns = frozenset(name for name, data_type in declared.items() if data_type == "bigint")
    quarantine: Quarantine = configured(config.name)

    def screened(table: pa.Table, flags: CastFlags) -> pa.Table:
        return quarantine.screen(resource.name, flags.attach(table), key_columns)

    def to_table(page: list[dict[str, Any]] | TypedPage) -> pa.Table:
        """Typed Arrow; only a page whose inferred types don't fit the declared ones pays
        for the per-value schema-policy check (a field that changed type), so the fast
        path stays fast. (Arrow would happily cast an int to a timestamp: check first.)
        A page Arrow refuses (bad text, an integer beyond 64 bits) has its bad records
        set aside in Python; every table is screened (common/rejects.py)."""
        flags = CastFlags()
        if isinstance(page, TypedPage):
            try:
                return screened(_cast(decoder.to_arrow(page.records), types, flags), flags)  # type: ignore[union-attr]
            except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):  # e.g. an int beyond int64
                page = _selected(tolerant_loads(page.content), resource.data_selector, resource.name)
                flags = CastFlags()
        records = page
        try:
            table = records_to_arrow(records, json_columns=json_columns)
            if all(_fits_declared(field.type, declared.get(field.name)) for field in table.schema):
                return screened(_cast(table, types, flags), flags)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, UnicodeEncodeError):
            records = quarantine.screen_records(resource.name, records, key_columns, int_columns)
        checked = enforce(config.name, resource.name, records, declared, config.schema_policy)
        return screened(_cast(records_to_arrow(checked, json_columns=json_columns), types, flags), flags)

    def tables(params: dict[str, Any]) -> Iterator[Any]:
        """Arrow tables of ~BATCH_ROWS rows; pages are fetched and converted one thread ahead."""
        paginator = make_paginator(paginator_spec)  # fresh: paginators count
        pages = map(to_table, _pages(make_client, resource, paginator, params, decoder))
        quarantine.take()  # nothing left over from a failed run in this process
        rows = 0

        def counted(batches: Iterator[pa.Table]) -> Iterator[pa.Table]:
            nonlocal rows
            for batch in batches:
                rows += batch.num_rows
                yield batch

        try:
            with _fewer_gc_passes():
                read = read_ahead([lambda: pages], PREFETCH_PAGES, "rest-prefetch")
                batches = counted(_batched(read, BATCH_ROWS))
                if merge_keys:
                    yield from _declare_deduplicated(batches, merge_keys)
                else:
                    yield from batches
            rejected = quarantine.item()
            if rejected is not None:
                yield rejected
        finally:
            # hand the decode buffers back before dlt's load step (DuckDB) needs memory:
            # ~70 MB of peak RSS at a million records. Only after a large load: a full
            # collection walks every object of the process (~0.5 s in a long-lived worker)
            # and a load of a few pages leaves nothing worth it
            gc.collect(2 if rows >= BATCH_ROWS else 0)
            pa.default_memory_pool().release_unused()

    def fetch_all() -> Iterator[pa.Table]:
        yield from tables(base_params)

    key = resource.primary_key
    merge_keys = (
        ([key] if isinstance(key, str) else list(key or [])) if resource.write_disposition == "merge" else []
    )

    options: dict[str, Any] = {
        "name": resource.name,
        "write_disposition": resource.write_disposition,
        "columns": dlt_columns or None,
    }
    if resource.primary_key:
        options["primary_key"] = resource.primary_key

    inc = resource.incremental
    if inc is None:
        return quarantine.attach_to(dlt.resource(fetch_all, **options)())

    if merge_keys and inc.cursor_path in columns:
        # When a key repeats in one run (a record updated while we paged), dlt's merge keeps
        # one row per key, by default an arbitrary one; sorting on the cursor keeps the newest.
        dlt_columns[inc.cursor_path] = {**dlt_columns[inc.cursor_path], "dedup_sort": "desc"}

    cursor_type = columns.get(inc.cursor_path, {}).get("data_type")

    def fetch_incremental(cursor: dlt.sources.incremental[Any]) -> Iterator[pa.Table]:
        params = dict(base_params)
        if inc.start_param and cursor.last_value is not None:
            params[inc.start_param] = _param_value(cursor.last_value)
        if inc.end_param and cursor.end_value is not None:
            params[inc.end_param] = _param_value(cursor.end_value)
        yield from tables(params)

    incremental = dlt.sources.incremental(
        inc.cursor_path,
        initial_value=_coerce_initial(inc.initial_value, cursor_type),
        end_value=_coerce_initial(inc.end_value, cursor_type),
    )
    return quarantine.attach_to(dlt.resource(fetch_incremental, **options)(cursor=incremental))


def rest_source(config: RestSourceConfig) -> DltSource:
    """The dlt source of one validated file; resolves its ``{{ … }}`` settings now."""
    make_client = _client_factory(config)
    quiet_expected_hint_warnings(resource.name for resource in config.resources)

    def resources() -> list[Any]:
        return [_make_resource(config, resource, make_client) for resource in config.resources]

    return dlt.source(resources, name=config.name, max_table_nesting=0)()
