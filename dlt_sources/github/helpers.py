"""HTTP client, pagination and Arrow shaping for GitHub's REST API.

Built to GitHub's public REST docs: ``Link: rel="next"`` pagination, conditional requests
(``ETag`` / ``If-None-Match``; a 304 does not count against the rate limit), the primary
rate limit (``x-ratelimit-remaining: 0`` + ``x-ratelimit-reset`` epoch seconds) and secondary
limits (403/429 with ``retry-after``), both of which are waited out rather than failed.
Everything else (retries with backoff, truncated bodies, 401 fail-fast messages naming the
setting) comes from :class:`dlt_sources.common.http.ApiClient`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import requests

from dlt_sources.common.arrow import records_to_arrow
from dlt_sources.common.http import ApiAuthError, ApiClient, ApiError, SourceSettings, redact
from dlt_sources.common.rejects import CastFlags, Quarantine
from dlt_sources.common.schema_policy import enforce
from dlt_sources.errors import SourceError

from . import settings

Page = list[dict[str, Any]]

NAMES = SourceSettings(
    source="github",
    credential_setting=settings.ACCESS_TOKEN_SETTING,
    base_url_setting=settings.BASE_URL_SETTING,
)

# GitHub token shapes (classic, fine-grained, app/user/server) are masked even if echoed back.
_TOKEN_PATTERN = re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{10,}|github_pat_[A-Za-z0-9_]{10,})")
_LINK_PART = re.compile(r"<([^>]*)>((?:\s*;\s*[^;,]+)*)")
_REL = re.compile(r"""rel\s*=\s*"?([^";]+)"?""")
_REPOSITORY = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")


class GitHubRateLimited(ApiError):
    """GitHub asked us to wait longer than allowed: worth retrying the run later."""

    @property
    def transient(self) -> bool:
        return True


# --------------------------------------------------------------------------- pure helpers
def parse_link_header(value: str | None) -> dict[str, str]:
    """``rel -> URL`` from an RFC 8288 ``Link`` header (GitHub: next, prev, first, last)."""
    links: dict[str, str] = {}
    if not value:
        return links
    for match in _LINK_PART.finditer(value):
        url, params = match.group(1).strip(), match.group(2)
        rel = _REL.search(params)
        if rel:
            for name in rel.group(1).split():
                links.setdefault(name.lower(), url)
    return links


def parse_timestamp(value: Any) -> datetime | None:
    """A GitHub ISO 8601 timestamp (or a datetime, e.g. a dlt cursor) as an aware UTC datetime."""
    if value is None or value == "":
        return None
    when = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


def format_since(value: Any) -> str | None:
    """The ``since`` query value GitHub documents: ``YYYY-MM-DDTHH:MM:SSZ``."""
    when = parse_timestamp(value)
    return None if when is None else when.strftime("%Y-%m-%dT%H:%M:%SZ")


def older_than(page: Page, field: str, cursor: Any) -> bool:
    """True once a page sorted newest first reaches rows older than ``cursor``.

    Endpoints without ``since`` (pulls, releases) are read newest first; paging stops at the
    first page whose last (oldest) row is before the cursor. The rows of that page that are
    still ``>= cursor`` are kept (the source drops the older ones).
    """
    start = parse_timestamp(cursor)
    if start is None or not page:
        return False
    oldest = parse_timestamp(page[-1].get(field))
    return oldest is not None and oldest < start


def rate_limit_wait_seconds(
    status: int,
    headers: Mapping[str, str],
    body: str = "",
    now: float | None = None,
    secondary_default: float = settings.SECONDARY_RATE_LIMIT_WAIT,
) -> float | None:
    """How long GitHub asks us to wait, or None when the response is not a rate limit.

    Per GitHub's docs: ``retry-after`` wins; else ``x-ratelimit-remaining: 0`` means wait
    until ``x-ratelimit-reset`` (UTC epoch seconds); else a 403/429 whose message mentions
    a (secondary) rate limit means wait at least a minute.
    """
    if status not in (403, 429):
        return None
    retry_after = headers.get("retry-after")
    if retry_after is not None:
        try:
            return max(0.0, float(retry_after))
        except ValueError:
            pass
    if headers.get("x-ratelimit-remaining") == "0":
        try:
            reset = float(headers.get("x-ratelimit-reset", ""))
        except ValueError:
            return secondary_default
        return max(0.0, reset - (time.time() if now is None else now))
    if "rate limit" in body.lower():
        return secondary_default
    return None


def validate_repositories(repositories: Any) -> list[str]:
    """``["owner/name", ...]``; a comma-separated string is accepted too (env convenience)."""
    if isinstance(repositories, str):
        repositories = [part for part in repositories.replace(" ", "").split(",") if part]
    repos = [str(repo).strip() for repo in repositories or []]
    bad = [repo for repo in repos if not _REPOSITORY.match(repo)]
    if not repos or bad:
        raise SourceError(
            f"github source: `{settings.REPOSITORIES_SETTING}` (env "
            f"{NAMES.env_name(settings.REPOSITORIES_SETTING)}) must list repositories as "
            f'["owner/name", ...]; got {repositories!r}.'
        )
    return list(dict.fromkeys(repos))


# ------------------------------------------------------------------------------ client
class GitHubClient(ApiClient):
    """GitHub REST lists: Bearer auth, versioned media type, Link paging, ETags, rate limits."""

    def __init__(
        self,
        access_token: str,
        base_url: str = settings.DEFAULT_BASE_URL,
        *,
        max_rate_limit_wait: float = settings.MAX_RATE_LIMIT_WAIT,
        secondary_rate_limit_wait: float = settings.SECONDARY_RATE_LIMIT_WAIT,
        max_rate_limit_waits: int = settings.MAX_RATE_LIMIT_WAITS,
        **options: Any,
    ) -> None:
        if not access_token or not access_token.strip():
            raise ApiAuthError(f"github source: the access token is empty; set {NAMES.credential_hint()}.")
        token = access_token.strip()
        options.setdefault("timeout", settings.REQUEST_TIMEOUT)
        options.setdefault("max_retries", settings.MAX_RETRIES)
        options.setdefault("backoff_factor", settings.BACKOFF_FACTOR)
        options.setdefault("max_backoff", settings.MAX_BACKOFF)
        super().__init__(
            base_url,
            NAMES,
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": settings.MEDIA_TYPE,
                "X-GitHub-Api-Version": settings.API_VERSION,
                "User-Agent": settings.USER_AGENT,
            },
            secrets=[token],
            **options,
        )
        self.max_rate_limit_wait = max_rate_limit_wait
        self.secondary_rate_limit_wait = secondary_rate_limit_wait
        self.max_rate_limit_waits = max_rate_limit_waits
        self._origin = urlsplit(self.base_url)[:2]
        # observability for tests and logs
        self.rate_limit_waits: list[float] = []
        self._request_waits = 0
        self.not_modified = 0

    # --- ApiClient hooks ----------------------------------------------------------
    def is_rate_limited(self, response: requests.Response) -> bool:
        return self._asked_wait(response) is not None

    def rate_limit_wait(self, response: requests.Response) -> float | None:
        wait = self._asked_wait(response)
        if wait is None:
            return None
        if wait > self.max_rate_limit_wait or self._request_waits >= self.max_rate_limit_waits:
            raise GitHubRateLimited(
                f"github source: rate limited on {_path(response.url)} (HTTP {response.status_code}); "
                f"GitHub asks to wait {wait:.0f} s, more than `{settings.MAX_RATE_LIMIT_WAIT_SETTING}` "
                f"= {self.max_rate_limit_wait:g} s (or {self.max_rate_limit_waits} waits already). "
                "Retry later or use a token with a larger budget.",
                status=response.status_code,
            )
        self.rate_limit_waits.append(wait)
        self._request_waits += 1
        return wait

    def begin_request(self) -> None:
        self._request_waits = 0  # the wait budget is per request

    def error_text(self, response: requests.Response) -> str:
        """GitHub's ``message`` field, redacted and kept short."""
        try:
            body = orjson.loads(response.content)
            text = str(body.get("message") or "")[:200] if isinstance(body, dict) else ""
        except orjson.JSONDecodeError:
            text = ""
        if not text:
            return super().error_text(response)
        return _TOKEN_PATTERN.sub("***", redact(text, self._secrets))

    def _asked_wait(self, response: requests.Response) -> float | None:
        if response.status_code not in (403, 429):
            return None
        body = response.text[:500] if response.status_code == 403 else ""
        wait = rate_limit_wait_seconds(
            response.status_code,
            response.headers,
            body,
            secondary_default=self.secondary_rate_limit_wait,
        )
        if wait is None and response.status_code == 429:
            return None  # a bare 429: ordinary retry with backoff
        return wait

    # --- listing ------------------------------------------------------------------
    def first_page_url(self, path: str, params: Mapping[str, Any]) -> str:
        """The canonical first-page URL (sorted query): the key its ETag is remembered under."""
        query = urlencode(sorted((k, str(v)) for k, v in params.items() if v is not None))
        return f"{self.url_for(path)}?{query}" if query else self.url_for(path)

    def pages(
        self,
        path: str,
        params: Mapping[str, Any],
        etags: MutableMapping[str, Any] | None = None,
        key: str | None = None,
        stop: Callable[[Page], bool] | None = None,
    ) -> Iterator[Page]:
        """Pages of a list endpoint, following ``Link: rel="next"`` until it is absent.

        With ``etags`` (a dict in dlt state) and ``key``, the first page is a conditional
        request: a 304 means the list is unchanged since the remembered response, so nothing
        is read. The new ETag is remembered only after the last page was read (or ``stop``
        returned True), so an interrupted listing is asked for again in full.
        """
        url = self.first_page_url(path, params)
        headers: dict[str, str] = {}
        remembered = etags.get(key) if etags is not None and key is not None else None
        if remembered and remembered.get("url") == url and remembered.get("etag"):
            headers["If-None-Match"] = remembered["etag"]
        response, body = self.get(url, headers=headers, ok_statuses=frozenset({304}))
        if response.status_code == 304:
            self.not_modified += 1
            return
        etag = response.headers.get("ETag")
        while True:
            page = self._as_page(response, body)
            yield page
            if stop is not None and stop(page):
                break
            next_url = parse_link_header(response.headers.get("Link")).get("next")
            if not next_url:
                break
            response, body = self.get(self._checked(next_url))
        if etags is not None and key is not None:
            if etag:
                etags[key] = {"url": url, "etag": etag}
            else:
                etags.pop(key, None)

    def _checked(self, url: str) -> str:
        """Follow next links only on our own origin: the token must not go elsewhere."""
        if urlsplit(url)[:2] != self._origin:
            raise ApiError(
                f"github source: refusing to follow a next link to another host ({_path(url, True)}); "
                f"check {NAMES.base_url_hint()}."
            )
        return url

    def _as_page(self, response: requests.Response, body: Any) -> Page:
        if not isinstance(body, list):
            raise ApiError(
                f"github source: {_path(response.url)} returned a {type(body).__name__}, expected a list",
                status=response.status_code,
            )
        return body


def _path(url: str | None, with_host: bool = False) -> str:
    parts = urlsplit(url or "")
    return f"{parts.scheme}://{parts.netloc}{parts.path}" if with_host else parts.path


# ------------------------------------------------------------------------- Arrow shape
# Per table: column -> kind. Kinds map to both an Arrow type and a dlt column hint, so the raw
# schema is stable (a column exists even if every value so far was null) and nested objects
# are JSON columns whatever nesting level a caller configures.
_COMMON = {
    "id": "int",
    "node_id": "text",
    "repository": "text",
    "url": "text",
    "html_url": "text",
}
FIELDS: dict[str, dict[str, str]] = {
    "issues": {
        **_COMMON,
        "number": "int",
        "title": "text",
        "state": "text",
        "state_reason": "text",
        "locked": "bool",
        "comments": "int",
        "author_association": "text",
        "body": "text",
        "user_login": "text",
        "is_pull_request": "bool",
        "created_at": "ts",
        "updated_at": "ts",
        "closed_at": "ts",
        "user": "json",
        "labels": "json",
        "assignee": "json",
        "assignees": "json",
        "milestone": "json",
        "pull_request": "json",
        "reactions": "json",
    },
    "pull_requests": {
        **_COMMON,
        "number": "int",
        "title": "text",
        "state": "text",
        "locked": "bool",
        "draft": "bool",
        "body": "text",
        "author_association": "text",
        "merge_commit_sha": "text",
        "user_login": "text",
        "head_ref": "text",
        "head_sha": "text",
        "base_ref": "text",
        "created_at": "ts",
        "updated_at": "ts",
        "closed_at": "ts",
        "merged_at": "ts",
        "user": "json",
        "labels": "json",
        "assignee": "json",
        "assignees": "json",
        "requested_reviewers": "json",
        "milestone": "json",
        "head": "json",
        "base": "json",
    },
    "issue_comments": {
        **_COMMON,
        "issue_url": "text",
        "issue_number": "int",
        "body": "text",
        "author_association": "text",
        "user_login": "text",
        "created_at": "ts",
        "updated_at": "ts",
        "user": "json",
        "reactions": "json",
    },
    "releases": {
        **_COMMON,
        "tag_name": "text",
        "target_commitish": "text",
        "name": "text",
        "body": "text",
        "draft": "bool",
        "prerelease": "bool",
        "author_login": "text",
        "created_at": "ts",
        "published_at": "ts",
        "author": "json",
        "assets": "json",
    },
}
CURSOR: dict[str, str] = {
    "issues": "updated_at",
    "pull_requests": "updated_at",
    "issue_comments": "updated_at",
    "releases": "created_at",  # releases have no updated_at and no since filter
}

_ARROW = {"int": pa.int64(), "text": pa.string(), "bool": pa.bool_(), "ts": pa.string(), "json": pa.string()}
_TIMESTAMP = pa.timestamp("us", tz="UTC")
_DLT_TYPE = {"int": "bigint", "text": "text", "bool": "bool", "ts": "timestamp", "json": "json"}
_REQUIRED = ("id", "repository")
_SCHEMAS = {
    table: pa.schema([pa.field(n, _ARROW[k], nullable=n not in _REQUIRED) for n, k in fields.items()])
    for table, fields in FIELDS.items()
}
_JSON = {table: [n for n, k in fields.items() if k == "json"] for table, fields in FIELDS.items()}
_TS = {table: [n for n, k in fields.items() if k == "ts"] for table, fields in FIELDS.items()}


def column_hints(table: str) -> dict[str, dict[str, Any]]:
    """dlt column hints for a table: types, a non-null ``id`` and newest-wins dedup."""
    hints: dict[str, dict[str, Any]] = {
        name: {"data_type": _DLT_TYPE[kind]} for name, kind in FIELDS[table].items()
    }
    for name in _REQUIRED:
        hints[name]["nullable"] = False
    # The same object can arrive twice in one load (it moved between pages while we paged):
    # merge keeps the newest version, not an arbitrary one.
    hints[CURSOR[table]]["dedup_sort"] = "desc"
    return hints


def _login(value: Any) -> str | None:
    return value.get("login") if isinstance(value, dict) else None


def _ref(value: Any, key: str) -> str | None:
    return value.get(key) if isinstance(value, dict) else None


def _issue_number(issue_url: Any) -> int | None:
    if not isinstance(issue_url, str):
        return None
    tail = issue_url.rstrip("/").rsplit("/", 1)[-1]
    return int(tail) if tail.isdigit() else None


def enrich(table: str, repository: str, record: dict[str, Any]) -> dict[str, Any]:
    """Add the flat fields we derive (``repository``, ``user_login``, ...) to one record."""
    extra: dict[str, Any] = {"repository": repository}
    if table == "issues":
        extra["user_login"] = _login(record.get("user"))
        extra["is_pull_request"] = record.get("pull_request") is not None
    elif table == "pull_requests":
        extra["user_login"] = _login(record.get("user"))
        extra["head_ref"] = _ref(record.get("head"), "ref")
        extra["head_sha"] = _ref(record.get("head"), "sha")
        extra["base_ref"] = _ref(record.get("base"), "ref")
    elif table == "issue_comments":
        extra["user_login"] = _login(record.get("user"))
        extra["issue_number"] = _issue_number(record.get("issue_url"))
    elif table == "releases":
        extra["author_login"] = _login(record.get("author"))
    return {**record, **extra}


def page_to_arrow(
    table: str, repository: str, page: Page, policy: str = "evolve", quarantine: Quarantine | None = None
) -> pa.Table:
    """One Arrow table per page: known columns typed, nested values JSON text, timestamps UTC.

    A field whose type changed is handled by the source's schema ``policy`` first, so
    the typed conversion below never sees a value of the wrong type. With a ``quarantine``,
    records that cannot load faithfully (no id, bad text, an integer beyond 64 bits, a
    timestamp outside years 1-9999) are set aside (common/rejects.py).
    """
    declared = {name: _DLT_TYPE[kind] for name, kind in FIELDS[table].items()}
    records = enforce(
        "github", table, [enrich(table, repository, record) for record in page], declared, policy
    )
    try:
        arrow = records_to_arrow(records, json_columns=_JSON[table], schema=_SCHEMAS[table])
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, UnicodeEncodeError):
        if quarantine is None:
            raise
        ints = frozenset(name for name, kind in FIELDS[table].items() if kind == "int")
        records = quarantine.screen_records(table, records, ("id",), ints)
        arrow = records_to_arrow(records, json_columns=_JSON[table], schema=_SCHEMAS[table])
    flags = CastFlags() if quarantine is not None else None
    for name in _TS[table]:
        index = arrow.schema.get_field_index(name)
        column = arrow.column(name)
        cast = flags.cast(name, column, _TIMESTAMP) if flags is not None else pc.cast(column, _TIMESTAMP)
        arrow = arrow.set_column(index, name, cast)
    if quarantine is not None and flags is not None:
        arrow = quarantine.screen(table, flags.attach(arrow), ("id",))
    # Unknown fields that were null on the whole page have no type yet: make them text
    # (nested values are JSON text anyway), so pages agree on one schema.
    for index, field in enumerate(arrow.schema):
        if pa.types.is_null(field.type):
            arrow = arrow.set_column(index, field.name, arrow.column(index).cast(pa.string()))
    # matches the non-null hints on `id` / `repository` (every record has them)
    fields = [f.with_nullable(False) if f.name in _REQUIRED else f for f in arrow.schema]
    return arrow.cast(pa.schema(fields, metadata=arrow.schema.metadata))
