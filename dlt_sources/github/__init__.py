"""dlt source for GitHub `issues`, `pull_requests`, `issue_comments` and `releases`.

One table per endpoint for a configured list of repositories, each row tagged with its
`repository`, merged on GitHub's globally unique `id`. Loads are incremental:

* `issues` and `issue_comments` send the stored `updated_at` cursor as `since`, so GitHub
  does the filtering (sorted by `updated` desc);
* `pull_requests` has no `since`: it is read `sort=updated&direction=desc` and paging stops
  at the first page that reaches rows older than the cursor;
* `releases` has no update timestamp at all: newest `created_at` first, same early stop.

Each repository has its own cursor (the newest value it loaded), kept in the resource's
dlt state and stored in the warehouse with the data. One cursor for all repositories lost
rows: a repository listed early in a run misses what changes in it while later ones are
listed, and the newer stamps those later repositories bring moved the shared cursor past
it (found by the reliability campaign under continuous writes).

Every first page is a conditional request (`If-None-Match` with the ETag remembered in dlt
state), so an unchanged repository costs a 304 and no rate limit. Pages become Arrow tables
(nested objects as JSON columns), which skip dlt's row-by-row normalizer.
"""

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import dlt
import pyarrow as pa
import pyarrow.compute as pc
from dlt.sources import DltResource

from dlt_sources.common.arrow import quiet_expected_hint_warnings
from dlt_sources.common.lineage import Origin, api_namespace
from dlt_sources.common.rejects import MAX_STRING_BYTES, Quarantine
from dlt_sources.common.schema_policy import check_policy
from dlt_sources.spec import FreshnessSla, SourceSpec

from . import settings
from .helpers import (
    CURSOR,
    GitHubClient,
    GitHubRateLimited,
    column_hints,
    format_since,
    older_than,
    page_to_arrow,
    parse_timestamp,
    validate_repositories,
)

__all__ = ["SPEC", "GitHubClient", "GitHubRateLimited", "github_source"]

# resource -> (path template, fixed query, uses `since`)
_ENDPOINTS: dict[str, tuple[str, dict[str, Any], bool]] = {
    "issues": (
        "/repos/{repo}/issues",
        {"state": "all", "sort": "updated", "direction": "desc"},
        True,
    ),
    "pull_requests": (
        "/repos/{repo}/pulls",
        {"state": "all", "sort": "updated", "direction": "desc"},
        False,
    ),
    "issue_comments": (
        "/repos/{repo}/issues/comments",
        {"sort": "updated", "direction": "desc"},
        True,
    ),
    "releases": ("/repos/{repo}/releases", {}, False),
}


@dlt.source(name="github", section="github", max_table_nesting=0)
def github_source(
    repositories: list[str] = dlt.config.value,
    access_token: str = dlt.secrets.value,
    base_url: str = settings.DEFAULT_BASE_URL,
    page_size: int = settings.PAGE_SIZE,
    initial_since: str | None = None,
    conditional_requests: bool = True,
    batch_rows: int = settings.BATCH_ROWS,
    request_timeout: float = settings.REQUEST_TIMEOUT,
    max_retries: int = settings.MAX_RETRIES,
    backoff_factor: float = settings.BACKOFF_FACTOR,
    max_rate_limit_wait: float = settings.MAX_RATE_LIMIT_WAIT,
    secondary_rate_limit_wait: float = settings.SECONDARY_RATE_LIMIT_WAIT,
    schema_policy: str = settings.SCHEMA_POLICY,
    bad_records: str = "quarantine",
    max_string_bytes: int = MAX_STRING_BYTES,
    ca_bundle: str | None = None,
    allow_insecure_http: bool = False,
) -> list[DltResource]:
    """GitHub issues, pull requests, issue comments and releases of `repositories`.

    Config lives under `sources.github` (env `SOURCES__GITHUB__ACCESS_TOKEN`,
    `SOURCES__GITHUB__REPOSITORIES='["owner/name"]'`, ...). `initial_since` (ISO 8601)
    bounds the first sync; later syncs resume from the cursors in dlt state.
    `schema_policy` (evolve | discard | freeze) decides what a field whose type
    changed does (see `dlt_sources.common.schema_policy`); `bad_records` (quarantine | fail)
    what a record that cannot load faithfully does (see `dlt_sources.common.rejects`).
    `ca_bundle` (a CA file that the API's certificate is verified against) and
    `allow_insecure_http` are checked by the shared client (`dlt_sources.common.http`).
    """
    repos = validate_repositories(repositories)
    policy = check_policy("github", schema_policy)
    quiet_expected_hint_warnings(settings.RESOURCES)
    if not 1 <= page_size <= settings.MAX_PAGE_SIZE:
        raise ValueError(f"page_size must be 1..{settings.MAX_PAGE_SIZE}, got {page_size}")
    initial: datetime | None = parse_timestamp(initial_since)
    quarantines = {table: Quarantine("github", bad_records, max_string_bytes) for table in settings.RESOURCES}

    def client() -> GitHubClient:
        return GitHubClient(
            access_token,
            base_url,
            timeout=request_timeout,
            max_retries=max_retries,
            backoff_factor=backoff_factor,
            max_rate_limit_wait=max_rate_limit_wait,
            secondary_rate_limit_wait=secondary_rate_limit_wait,
            ca_bundle=ca_bundle,
            allow_insecure_http=allow_insecure_http,
        )

    # Fail fast on an empty token, a malformed or plain-http URL, a missing CA file before any resource runs.
    client().close()

    def list_endpoint(table: str) -> Iterator[pa.Table]:
        """Every configured repository's pages of one endpoint, as Arrow tables."""
        path, fixed, uses_since = _ENDPOINTS[table]
        state = dlt.current.resource_state()
        # repository -> {"at": the newest cursor value loaded from it (ISO 8601), "ids": the
        # ids loaded with exactly that value}: `since` is inclusive, they come back next run
        cursors: dict[str, dict[str, Any]] = state.setdefault("cursors", {})
        etags: dict[str, Any] | None = None
        if conditional_requests:
            etags = state.setdefault("etags", {})
        # dlt's per-item cost (schema hints, incremental) is ~10 ms: hand it a few thousand
        # rows at a time rather than every 100-row page
        batch: list[pa.Table] = []
        quarantine = quarantines[table]
        quarantine.take()  # nothing left over from a failed run in this process
        with client() as api:
            for repo in repos:
                cursor = _RepoCursor.load(cursors.get(repo), initial)
                params: dict[str, Any] = {**fixed, "per_page": page_size}
                if uses_since and cursor.at is not None:
                    params["since"] = format_since(cursor.at)
                stop = None if uses_since else _stop_before(CURSOR[table], cursor.at)
                for page in api.pages(path.format(repo=repo), params, etags, repo, stop):
                    rows = cursor.advance(page_to_arrow(table, repo, page, policy, quarantine), table)
                    if rows.num_rows:
                        batch.append(rows)
                        if sum(t.num_rows for t in batch) >= batch_rows:
                            yield from _combined(batch)
                            batch = []
                if cursor.newest is not None:  # committed with this load, like the rows
                    cursors[repo] = cursor.saved()
            yield from _combined(batch)
        rejected = quarantine.item()
        if rejected is not None:
            yield rejected

    return [
        quarantines[table].attach_to(
            dlt.resource(
                list_endpoint,
                name=table,
                write_disposition="merge",
                primary_key="id",
                columns=column_hints(table),
            )(table)
        )
        for table in settings.RESOURCES
    ]


@dataclass
class _RepoCursor:
    """One repository's cursor through one run: the rows it lets through, the value it reaches."""

    at: datetime | None  # the cursor at the start of the run
    seen_at: pa.Array  # ids already loaded with exactly that value (int64, built once per run)
    newest: datetime | None = None
    newest_ids: set[int] = field(default_factory=set)

    @classmethod
    def load(cls, saved: dict[str, Any] | None, initial: datetime | None) -> "_RepoCursor":
        saved = saved or {}
        at = parse_timestamp(saved.get("at")) or initial
        ids = saved.get("ids", ())
        return cls(at, pa.array(sorted(ids), pa.int64()), at, set(ids))

    def advance(self, rows: pa.Table, table: str) -> pa.Table:
        """The new rows: at or after the cursor (an early stop's last page reaches older ones),
        less those loaded at exactly the cursor value before; the newest value moves on."""
        if not rows.num_rows:
            return rows
        column = rows[CURSOR[table]]
        if self.at is not None:
            at = pa.scalar(self.at, column.type)
            repeat = pc.and_(pc.equal(column, at), pc.is_in(rows["id"], self.seen_at))
            keep = pc.and_(pc.greater_equal(column, at), pc.invert(repeat))
            rows = rows.filter(pc.fill_null(keep, True))
            column = rows[CURSOR[table]]
        value = pc.max(column).as_py() if rows.num_rows else None
        if value is not None and (self.newest is None or value > self.newest):
            self.newest, self.newest_ids = value, set()
        if value is not None and value == self.newest:
            at_newest = pc.equal(column, pa.scalar(self.newest, column.type))
            self.newest_ids.update(rows.filter(pc.fill_null(at_newest, False))["id"].to_pylist())
        return rows

    def saved(self) -> dict[str, Any]:
        assert self.newest is not None
        return {"at": self.newest.isoformat(), "ids": sorted(self.newest_ids)}


def _combined(tables: list[pa.Table]) -> Iterator[pa.Table]:
    """One table from several pages; pages whose extra columns disagree in type stay apart."""
    if len(tables) <= 1:
        yield from tables
        return
    try:
        yield pa.concat_tables(tables, promote_options="default")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        yield from tables


def _stop_before(field: str, start: Any) -> Any:
    if start is None:
        return None
    return lambda page: older_than(page, field, start)


def lineage_origin() -> Origin:
    """Each table's endpoint (``/repos/{repo}/issues`` …) under the configured base URL."""
    base_url = dlt.config.get("sources.github.base_url") or settings.DEFAULT_BASE_URL
    return Origin(api_namespace(base_url), {table: path for table, (path, _, _) in _ENDPOINTS.items()})


SPEC = SourceSpec(
    name="github",
    factory=github_source,
    tables=settings.RESOURCES,
    schedule="35 */6 * * *",
    origin="GitHub's REST API (issues, pull requests, comments and releases of the configured repositories)",
    freshness=FreshnessSla(default=timedelta(days=1)),
    lineage=lineage_origin,
)
