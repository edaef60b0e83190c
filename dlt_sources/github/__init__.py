"""dlt source for GitHub `issues`, `pull_requests`, `issue_comments` and `releases`.

One table per endpoint for a configured list of repositories, each row tagged with its
`repository`, merged on GitHub's globally unique `id`. Loads are incremental:

* `issues` and `issue_comments` send the stored `updated_at` cursor as `since`, so GitHub
  does the filtering (sorted by `updated` desc);
* `pull_requests` has no `since`: it is read `sort=updated&direction=desc` and paging stops
  at the first page that reaches rows older than the cursor;
* `releases` has no update timestamp at all: newest `created_at` first, same early stop.

Every first page is a conditional request (`If-None-Match` with the ETag remembered in dlt
state), so an unchanged repository costs a 304 and no rate limit. Pages become Arrow tables
(nested objects as JSON columns), which skip dlt's row-by-row normalizer.
"""

# No `from __future__ import annotations` here: dlt finds the incremental argument of a
# resource by resolving its annotation at runtime; a string annotation leaves it unbound.
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import dlt
import pyarrow as pa
from dlt.sources import DltResource

from dlt_sources.common.arrow import quiet_expected_hint_warnings
from dlt_sources.common.rejects import MAX_STRING_BYTES, Quarantine
from dlt_sources.common.schema_policy import check_policy

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

__all__ = ["GitHubClient", "GitHubRateLimited", "github_source"]

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
) -> list[DltResource]:
    """GitHub issues, pull requests, issue comments and releases of `repositories`.

    Config lives under `sources.github` (env `SOURCES__GITHUB__ACCESS_TOKEN`,
    `SOURCES__GITHUB__REPOSITORIES='["owner/name"]'`, ...). `initial_since` (ISO 8601)
    bounds the first sync; later syncs resume from the cursors in dlt state.
    `schema_policy` (evolve | discard | freeze) decides what a field whose type
    changed does (see `dlt_sources.common.schema_policy`); `bad_records` (quarantine | fail)
    what a record that cannot load faithfully does (see `dlt_sources.common.rejects`).
    """
    repos = validate_repositories(repositories)
    policy = check_policy("github", schema_policy)
    quiet_expected_hint_warnings(settings.RESOURCES)
    if not 1 <= page_size <= settings.MAX_PAGE_SIZE:
        raise ValueError(f"page_size must be 1..{settings.MAX_PAGE_SIZE}, got {page_size}")
    initial: datetime | None = parse_timestamp(initial_since)
    quarantines = {table: Quarantine("github", bad_records, max_string_bytes) for table in settings.RESOURCES}
    # Fail fast on an empty token / malformed URL before any resource runs.
    GitHubClient(access_token, base_url).close()

    def client() -> GitHubClient:
        return GitHubClient(
            access_token,
            base_url,
            timeout=request_timeout,
            max_retries=max_retries,
            backoff_factor=backoff_factor,
            max_rate_limit_wait=max_rate_limit_wait,
            secondary_rate_limit_wait=secondary_rate_limit_wait,
        )

    def list_endpoint(
        table: str,
        cursor: dlt.sources.incremental[datetime],
    ) -> Iterator[pa.Table]:
        """Every configured repository's pages of one endpoint, as Arrow tables."""
        path, fixed, uses_since = _ENDPOINTS[table]
        # start_value is the cursor at the start of the run; last_value moves as pages pass.
        start = cursor.start_value
        since = format_since(start)
        etags: dict[str, Any] | None = None
        if conditional_requests:
            etags = dlt.current.resource_state().setdefault("etags", {})
        # dlt's per-item cost (schema hints, incremental) is ~10 ms: hand it a few thousand
        # rows at a time rather than every 100-row page
        batch: list[pa.Table] = []
        quarantine = quarantines[table]
        quarantine.take()  # nothing left over from a failed run in this process
        with client() as api:
            for repo in repos:
                params: dict[str, Any] = {**fixed, "per_page": page_size}
                if uses_since and since:
                    params["since"] = since
                stop = None if uses_since else _stop_before(CURSOR[table], start)
                for page in api.pages(path.format(repo=repo), params, etags, repo, stop):
                    if page:
                        batch.append(page_to_arrow(table, repo, page, policy, quarantine))
                        if sum(t.num_rows for t in batch) >= batch_rows:
                            yield from _combined(batch)
                            batch = []
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
            )(table, cursor=dlt.sources.incremental(CURSOR[table], initial_value=initial))
        )
        for table in settings.RESOURCES
    ]


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
