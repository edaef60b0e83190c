"""The GitHub stand-in follows the documented behaviour the source relies on."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from dlt_sources.github.helpers import parse_link_header
from standins.github_api import GitHubStore, demo_store, serve_github

TOKEN = "ghp_standinToken000111"
REPO = "o/r"


@pytest.fixture
def store() -> GitHubStore:
    return GitHubStore(4).seed(20, repos=(REPO,), n_pulls=6, n_comments=15, n_releases=3)


class Api(requests.Session):
    def __init__(self, base_url: str) -> None:
        super().__init__()
        self.base_url = base_url
        self.headers["Authorization"] = f"Bearer {TOKEN}"


@pytest.fixture
def api(store: GitHubStore) -> Iterator[Api]:
    with serve_github(store, TOKEN) as url, Api(url) as session:
        yield session


def get(api: Api, path: str, **params: object) -> requests.Response:
    return api.get(f"{api.base_url}/repos/{REPO}/{path}", params=params, timeout=5)


def test_seed_is_deterministic_and_realistic() -> None:
    one, two = demo_store(), demo_store()
    for table in ("issues", "pull_requests", "issue_comments", "releases"):
        assert one.truth("octo-org/widgets", table) == two.truth("octo-org/widgets", table)
    issues = one.truth("octo-org/octo-repo", "issues")
    assert any("pull_request" in i for i in issues) and any(i["state"] == "closed" for i in issues)
    assert sum(i["comments"] for i in issues) == len(one.truth("octo-org/octo-repo", "issue_comments"))


def test_link_headers_and_per_page(api: Api, store: GitHubStore) -> None:
    first = get(api, "issues", state="all", per_page=10)
    links = parse_link_header(first.headers["Link"])
    assert set(links) == {"next", "last"} and "page=3" in links["last"]
    assert len(first.json()) == 10
    last = requests.get(links["last"], headers=api.headers, timeout=5)
    assert set(parse_link_header(last.headers["Link"])) == {"first", "prev"}
    assert len(last.json()) == store.count("issues") - 20
    assert len(get(api, "issues", state="all").json()) == 26  # default 30 per page
    assert len(get(api, "issues", state="all", per_page=500).json()) == 26  # clamped to 100


def test_filters_sorting_and_defaults(api: Api, store: GitHubStore) -> None:
    everything = get(api, "issues", state="all", per_page=100).json()
    assert {i["state"] for i in get(api, "issues", per_page=100).json()} == {"open"}  # default state
    assert [i["created_at"] for i in everything] == sorted(
        (i["created_at"] for i in everything), reverse=True
    )
    cut = sorted(i["updated_at"] for i in everything)[13]
    since = get(api, "issues", state="all", since=cut, sort="updated", direction="asc", per_page=100).json()
    assert since and all(i["updated_at"] >= cut for i in since)
    assert [i["updated_at"] for i in since] == sorted(i["updated_at"] for i in since)
    pulls = get(api, "pulls", state="all", sort="updated", per_page=100).json()  # asc by default here
    assert [p["updated_at"] for p in pulls] == sorted(p["updated_at"] for p in pulls)
    releases = get(api, "releases").json()
    assert [r["created_at"] for r in releases] == sorted((r["created_at"] for r in releases), reverse=True)
    assert get(api, "nope").status_code == 404
    assert api.get(f"{api.base_url}/repos/x/y/issues", timeout=5).status_code == 404


def test_auth_etags_and_rate_limits(api: Api, store: GitHubStore) -> None:
    unauthenticated = requests.get(f"{api.base_url}/repos/{REPO}/issues", timeout=5)
    assert unauthenticated.status_code == 401 and unauthenticated.json()["message"] == "Bad credentials"

    first = get(api, "releases")
    assert first.headers["ETag"].startswith('W/"') and first.headers["x-ratelimit-resource"] == "core"
    used = store.rate_limit_used
    again = api.get(first.url, headers={"If-None-Match": first.headers["ETag"]}, timeout=5)
    assert again.status_code == 304 and again.content == b""
    assert store.rate_limit_used == used  # free

    store.secondary_limit_next(1, status=429, retry_after=3)
    limited = get(api, "releases")
    assert limited.status_code == 429 and limited.headers["retry-after"] == "3"

    store.rate_limit = store.rate_limit_used  # budget spent
    spent = get(api, "issues")
    assert spent.status_code == 403
    assert spent.headers["x-ratelimit-remaining"] == "0" and int(spent.headers["x-ratelimit-reset"]) > 0
    assert "rate limit" in spent.json()["message"]


def test_mutations_bump_updated_at(store: GitHubStore) -> None:
    before = {i["number"]: i for i in store.truth(REPO, "issues")}
    latest = max(i["updated_at"] for i in before.values())
    number = next(n for n, i in before.items() if i["state"] == "open")
    edited = store.edit_issue(REPO, number, state="closed")
    assert edited["updated_at"] > latest and edited["closed_at"] == edited["updated_at"]
    comment = store.add_comment(REPO, 3)
    issue = next(i for i in store.truth(REPO, "issues") if i["number"] == 3)
    assert issue["updated_at"] == comment["updated_at"] and issue["comments"] == before[3]["comments"] + 1
    pull = store.add_pull_request(REPO, "p")
    assert any(i["number"] == pull["number"] and "pull_request" in i for i in store.truth(REPO, "issues"))
