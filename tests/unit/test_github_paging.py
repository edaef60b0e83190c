"""GitHub source building blocks without dlt: Link parsing, cursor logic, ETags, rate-limit waits."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pytest
import requests

from dlt_sources.common.http import ApiAuthError, ApiError
from dlt_sources.errors import SourceError
from dlt_sources.github import _combined
from dlt_sources.github.helpers import (
    GitHubClient,
    GitHubRateLimited,
    column_hints,
    format_since,
    older_than,
    page_to_arrow,
    parse_link_header,
    parse_timestamp,
    rate_limit_wait_seconds,
    validate_repositories,
)
from standins.github_api import GitHubStore, serve_github

TOKEN = "ghp_unitTestToken0123456789"
NOW = 1_700_000_000.0


# ------------------------------------------------------------------------------ Link header
def test_parse_link_header_github_shape() -> None:
    header = (
        '<https://api.github.com/repositories/1300192/issues?page=2>; rel="prev", '
        '<https://api.github.com/repositories/1300192/issues?page=4>; rel="next", '
        '<https://api.github.com/repositories/1300192/issues?page=515>; rel="last", '
        '<https://api.github.com/repositories/1300192/issues?page=1>; rel="first"'
    )
    links = parse_link_header(header)
    assert links == {
        "prev": "https://api.github.com/repositories/1300192/issues?page=2",
        "next": "https://api.github.com/repositories/1300192/issues?page=4",
        "last": "https://api.github.com/repositories/1300192/issues?page=515",
        "first": "https://api.github.com/repositories/1300192/issues?page=1",
    }


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, {}),
        ("", {}),
        ("<https://x/a?page=2&per_page=100>;rel=next", {"next": "https://x/a?page=2&per_page=100"}),
        (
            '<https://x/a?p=3>; title="t"; rel="next last"',
            {"next": "https://x/a?p=3", "last": "https://x/a?p=3"},
        ),
        ('<https://x/a?p=9>; rel="last"', {}),  # last page: no next
        ("garbage", {}),
    ],
)
def test_parse_link_header_edge_cases(header: str | None, expected: dict[str, str]) -> None:
    links = parse_link_header(header)
    assert {k: v for k, v in links.items() if k in expected or k == "next"} == expected


# --------------------------------------------------------------------------- since / cursor
def test_since_is_githubs_iso_format() -> None:
    assert format_since(None) is None
    assert format_since("2024-03-01T10:11:12Z") == "2024-03-01T10:11:12Z"
    assert format_since(datetime(2024, 3, 1, 10, 11, 12, 999, tzinfo=UTC)) == "2024-03-01T10:11:12Z"
    naive = datetime(2024, 3, 1, 10, 11, 12)  # treated as UTC
    assert format_since(naive) == "2024-03-01T10:11:12Z"
    assert parse_timestamp("2024-03-01T12:00:00+02:00") == datetime(2024, 3, 1, 10, tzinfo=UTC)


def _page(*stamps: str) -> list[dict[str, Any]]:
    return [{"id": i, "updated_at": stamp} for i, stamp in enumerate(stamps)]


def test_paging_without_since_stops_at_rows_older_than_the_cursor() -> None:
    cursor = datetime(2024, 1, 10, tzinfo=UTC)
    assert not older_than(_page("2024-01-12T00:00:00Z", "2024-01-10T00:00:00Z"), "updated_at", cursor)
    assert older_than(_page("2024-01-12T00:00:00Z", "2024-01-09T23:59:59Z"), "updated_at", cursor)
    assert not older_than([], "updated_at", cursor)
    assert not older_than(_page("2020-01-01T00:00:00Z"), "updated_at", None)  # first run: read all


# ------------------------------------------------------------------------ rate-limit waits
def test_primary_rate_limit_waits_until_reset() -> None:
    headers = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW) + 42)}
    assert rate_limit_wait_seconds(403, headers, now=NOW) == 42
    assert rate_limit_wait_seconds(429, headers, now=NOW) == 42
    past = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW) - 5)}
    assert rate_limit_wait_seconds(403, past, now=NOW) == 0


def test_secondary_rate_limit_prefers_retry_after_then_a_minute() -> None:
    assert rate_limit_wait_seconds(403, {"retry-after": "7", "x-ratelimit-remaining": "0"}, now=NOW) == 7
    assert rate_limit_wait_seconds(429, {"retry-after": "3"}, now=NOW) == 3
    body = '{"message": "You have exceeded a secondary rate limit."}'
    assert rate_limit_wait_seconds(403, {"x-ratelimit-remaining": "12"}, body, now=NOW) == 60
    assert rate_limit_wait_seconds(403, {}, body, now=NOW, secondary_default=5) == 5


def test_not_a_rate_limit() -> None:
    assert rate_limit_wait_seconds(403, {"x-ratelimit-remaining": "4999"}, '{"message":"Forbidden"}') is None
    assert rate_limit_wait_seconds(500, {"retry-after": "1"}) is None
    assert rate_limit_wait_seconds(429, {}) is None  # a bare 429: ordinary backoff


def _response(status: int, headers: dict[str, str], body: bytes = b"{}") -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.headers.update(headers)
    response._content = body
    response.url = "https://api.github.com/repos/o/r/issues?per_page=100"
    return response


def test_client_caps_the_wait_and_fails_transiently() -> None:
    client = GitHubClient(TOKEN, max_rate_limit_wait=10)
    limited = _response(403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "9999999999"})
    assert client.is_rate_limited(limited)
    with pytest.raises(GitHubRateLimited, match=r"sources\.github\.max_rate_limit_wait") as info:
        client.rate_limit_wait(limited)
    assert info.value.transient
    assert TOKEN not in str(info.value)
    assert client.rate_limit_wait(_response(429, {"retry-after": "2"})) == 2
    assert client.rate_limit_waits == [2]
    assert client.rate_limit_wait(_response(403, {}, b'{"message":"Must have admin rights"}')) is None
    assert client.rate_limit_wait(_response(502, {})) is None


def test_client_headers_and_no_token_in_repr() -> None:
    client = GitHubClient(TOKEN, "https://ghe.example.com/api/v3/")
    assert client.session.headers["Authorization"] == f"Bearer {TOKEN}"
    assert client.session.headers["Accept"] == "application/vnd.github+json"
    assert client.session.headers["X-GitHub-Api-Version"] == "2022-11-28"
    assert TOKEN not in repr(client)
    with pytest.raises(ApiAuthError, match="SOURCES__GITHUB__ACCESS_TOKEN"):
        GitHubClient(" ")
    with pytest.raises(SourceError, match=r"sources\.github\.base_url"):
        GitHubClient(TOKEN, "api.github.com")


def test_repositories_setting_is_validated() -> None:
    assert validate_repositories(["a/b", "c-d/e.f", "a/b"]) == ["a/b", "c-d/e.f"]
    assert validate_repositories("a/b, c/d") == ["a/b", "c/d"]
    for bad in ([], ["nope"], ["a/b/c"], None):
        with pytest.raises(SourceError, match="SOURCES__GITHUB__REPOSITORIES"):
            validate_repositories(bad)


# ------------------------------------------------------------------- ETags + paging (HTTP)
@pytest.fixture
def store() -> GitHubStore:
    return GitHubStore(3).seed(25, repos=("o/r",), n_pulls=5, n_comments=10, n_releases=2)


def test_pages_follow_link_next_and_remember_the_first_page_etag(store: GitHubStore) -> None:
    etags: dict[str, Any] = {}
    params = {"state": "all", "sort": "updated", "direction": "desc", "per_page": 7}
    with serve_github(store, TOKEN) as url, GitHubClient(TOKEN, url) as client:
        pages = list(client.pages("/repos/o/r/issues", params, etags, "o/r"))
        assert [len(p) for p in pages] == [7, 7, 7, 7, 2]
        assert sum(map(len, pages)) == store.count("issues") == 30
        assert etags["o/r"]["url"] == client.first_page_url("/repos/o/r/issues", params)
        assert etags["o/r"]["etag"].startswith('W/"')

        # unchanged: one conditional request, answered 304, nothing read, no rate-limit cost
        used = store.rate_limit_used
        assert list(client.pages("/repos/o/r/issues", params, etags, "o/r")) == []
        assert client.not_modified == 1
        assert store.log[-1].status == 304 and store.log[-1].if_none_match == etags["o/r"]["etag"]
        assert store.rate_limit_used == used

        # a change anywhere moves that issue to the top of page 1: the ETag no longer matches
        store.edit_issue("o/r", 3, title="changed")
        pages = list(client.pages("/repos/o/r/issues", params, etags, "o/r"))
        assert pages[0][0]["number"] == 3

        # a different URL (e.g. a new `since`) is never sent the old ETag
        since = {**params, "since": "2030-01-01T00:00:00Z"}
        assert list(client.pages("/repos/o/r/issues", since, etags, "o/r")) == [[]]
        assert store.log[-1].if_none_match is None


def test_pages_stop_early_and_survive_empty_last_page(store: GitHubStore) -> None:
    store.empty_last_page = True
    params = {"state": "all", "sort": "updated", "direction": "desc", "per_page": 5}
    with serve_github(store, TOKEN) as url, GitHubClient(TOKEN, url) as client:
        pages = list(client.pages("/repos/o/r/pulls", params))
        assert [len(p) for p in pages] == [5, 0]  # a next link to an empty page is harmless
        served = len(store.log)
        pages = list(client.pages("/repos/o/r/issues", params, stop=lambda page: True))
        assert len(pages) == 1 and len(store.log) == served + 1


def test_next_links_to_another_host_are_refused(store: GitHubStore) -> None:
    class Evil(GitHubClient):
        def get(self, path: str, *args: Any, **kwargs: Any) -> Any:
            response, body = super().get(path, *args, **kwargs)
            response.headers["Link"] = '<https://evil.example/steal?page=2>; rel="next"'
            return response, body

    with (
        serve_github(store, TOKEN) as url,
        Evil(TOKEN, url) as client,
        pytest.raises(ApiError, match="another host"),
    ):
        list(client.pages("/repos/o/r/issues", {"per_page": 5}))


def test_forbidden_403_fails_fast_with_the_setting_named(store: GitHubStore) -> None:
    store.forbidden.add("o/r")
    with (
        serve_github(store, TOKEN) as url,
        GitHubClient(TOKEN, url, max_retries=5) as client,
        pytest.raises(ApiAuthError, match="SOURCES__GITHUB__ACCESS_TOKEN") as info,
    ):
        list(client.pages("/repos/o/r/issues", {}))
    assert "Resource not accessible" in str(info.value)
    assert len(store.log) == 1  # no retries
    assert TOKEN not in str(info.value)


# --------------------------------------------------------------------------------- Arrow
def test_page_to_arrow_types_and_flat_fields(store: GitHubStore) -> None:
    pulls = [obj for obj in store.truth("o/r", "issues") if "pull_request" in obj][:2]
    plain = [obj for obj in store.truth("o/r", "issues") if "pull_request" not in obj][:2]
    table = page_to_arrow("issues", "o/r", plain + pulls)
    assert table.schema.field("id").type == pa.int64() and not table.schema.field("id").nullable
    assert table.schema.field("updated_at").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field("labels").type == pa.string()
    rows = table.to_pylist()
    assert [r["is_pull_request"] for r in rows] == [False, False, True, True]
    assert rows[0]["user_login"] == plain[0]["user"]["login"]
    assert rows[0]["repository"] == "o/r"
    assert rows[2]["pull_request"].startswith('{"url":')

    comments = page_to_arrow("issue_comments", "o/r", store.truth("o/r", "issue_comments")[:3])
    truth = store.truth("o/r", "issue_comments")[:3]
    assert comments.column("issue_number").to_pylist() == [
        int(c["issue_url"].rsplit("/", 1)[1]) for c in truth
    ]

    # a page where an unknown field is always null still gets a concrete type
    odd = page_to_arrow("releases", "o/r", [{**store.truth("o/r", "releases")[0], "mystery": None}])
    assert odd.schema.field("mystery").type == pa.string()


def test_column_hints_declare_json_and_newest_wins() -> None:
    hints = column_hints("pull_requests")
    assert hints["head"]["data_type"] == "json"
    assert hints["updated_at"] == {"data_type": "timestamp", "dedup_sort": "desc"}
    assert hints["id"] == {"data_type": "bigint", "nullable": False}
    assert column_hints("releases")["created_at"]["dedup_sort"] == "desc"


def test_pages_are_combined_into_bigger_tables() -> None:
    one = pa.table({"id": [1], "extra": ["a"]})
    two = pa.table({"id": [2], "other": [True]})
    (combined,) = _combined([one, two])
    assert combined.to_pylist() == [
        {"id": 1, "extra": "a", "other": None},
        {"id": 2, "extra": None, "other": True},
    ]
    clash = pa.table({"id": [3], "extra": [1.5]})  # a type conflict: keep the pages apart
    assert len(list(_combined([one, clash]))) == 2
    assert list(_combined([])) == []


def test_rate_limit_wait_budget_is_per_request() -> None:
    client = GitHubClient(TOKEN, max_rate_limit_waits=2)
    limited = _response(429, {"retry-after": "0"})
    assert client.rate_limit_wait(limited) == 0
    assert client.rate_limit_wait(limited) == 0
    with pytest.raises(GitHubRateLimited, match="2 waits"):
        client.rate_limit_wait(limited)
