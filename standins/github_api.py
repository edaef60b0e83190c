"""Local HTTP stand-in for the parts of GitHub's REST API that the dlt source reads.

Why: the demo and the tests must run offline and deterministically, yet exercise the real
HTTP code path of ``dlt_sources.github``. It follows GitHub's documented behaviour for

* ``GET /repos/{owner}/{repo}/issues`` (PRs included, with a ``pull_request`` key;
  ``state``, ``sort=created|updated|comments``, ``direction``, ``since``),
* ``GET /repos/{owner}/{repo}/pulls`` (``state``, ``sort=created|updated``, ``direction``;
  no ``since``), ``GET /repos/{owner}/{repo}/issues/comments`` (``sort``, ``direction``,
  ``since``) and ``GET /repos/{owner}/{repo}/releases`` (newest first),
* ``per_page`` (default 30, max 100) / ``page`` with ``Link`` headers (``next``, ``last``,
  plus ``first``/``prev`` after page 1),
* conditional requests: a weak ``ETag`` on list responses, ``304`` on a matching
  ``If-None-Match`` (costs no rate limit),
* the primary rate limit (``x-ratelimit-*`` headers; ``403`` with ``x-ratelimit-remaining: 0``
  once the budget is spent) and injected secondary limits (403/429 with ``retry-after``),
* ``401 Bad credentials``.

For the client's resilience it can also inject faults at a seeded ``fault_rate`` (429 with
``Retry-After``, 500, 502, a response slower than the client's timeout, a truncated body)
and reproduce paging edge cases: an empty last page behind a ``next`` link, an object
updated while being paged (``on_page`` callbacks) and the same object on two pages
(``repeat_boundary``). Sub-second rate-limit windows (tests) send ``x-ratelimit-reset``
with decimals; GitHub itself sends whole epoch seconds.
"""

from __future__ import annotations

import hashlib
import math
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import orjson

from standins.loopback import LoopbackServer, QuietHandler, serving

DEFAULT_PER_PAGE = 30
MAX_PER_PAGE = 100
DOCS = "https://docs.github.com/rest"
T0 = datetime(2024, 1, 1, tzinfo=UTC)
LABELS = ("bug", "enhancement", "documentation", "question", "good first issue", "performance")
USERS = ("octocat", "hubot", "monalisa", "defunkt", "mojombo", "pjhyett", "wycats", "ezmobius")
ENDPOINTS = ("issues", "pulls", "issues/comments", "releases")


class GitHubError(Exception):
    """An API error carrying the status, GitHub's ``message`` and extra headers."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}

    def body(self) -> bytes:
        return orjson.dumps({"message": self.message, "documentation_url": DOCS, "status": str(self.status)})


@dataclass
class _Repo:
    full_name: str
    issues: dict[int, dict[str, Any]] = field(default_factory=dict)  # number -> issue (PRs too)
    pulls: dict[int, dict[str, Any]] = field(default_factory=dict)  # number -> pull request
    comments: dict[int, dict[str, Any]] = field(default_factory=dict)  # id -> comment
    releases: dict[int, dict[str, Any]] = field(default_factory=dict)  # id -> release
    next_number: int = 1


@dataclass
class RequestLog:
    """One request the stand-in answered (for assertions)."""

    path: str
    params: dict[str, str]
    if_none_match: str | None
    status: int
    cost: int


def iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class GitHubStore:
    """Thread-safe in-memory GitHub: repositories with issues, PRs, comments and releases.

    Timestamps come from a seeded clock that only moves forward, so the data is the same
    on every run. ``rate_limit`` requests are allowed per ``rate_limit_window`` seconds;
    ``fault_rate`` (0..1) of authenticated requests fail with a seeded random fault.
    """

    def __init__(
        self,
        seed: int = 0,
        *,
        start: datetime = T0,
        rate_limit: int = 5000,
        rate_limit_window: float = 3600.0,
        fault_rate: float = 0.0,
        faults: tuple[str, ...] = ("429", "500", "502", "timeout", "truncated"),
        fault_retry_after: float = 0.0,
        timeout_delay: float = 1.0,
        repeat_boundary: bool = False,
        empty_last_page: bool = False,
    ) -> None:
        self._lock = threading.RLock()
        self._rng = random.Random(seed)
        self._fault_rng = random.Random(seed + 1)
        self._clock = start
        self._next_id = 1_000
        self.repos: dict[str, _Repo] = {}
        self.rate_limit = rate_limit
        self.rate_limit_window = rate_limit_window
        self._window_reset = 0.0
        self._window_used = 0
        self.fault_rate = fault_rate
        self.faults = faults
        self.fault_retry_after = fault_retry_after
        self.timeout_delay = timeout_delay
        self.repeat_boundary = repeat_boundary
        self.empty_last_page = empty_last_page
        self._secondary: list[tuple[int, float]] = []
        self.forbidden: set[str] = set()  # repositories answering a plain 403 (no access)
        self.on_page: list[Callable[[str, str, int], None]] = []
        # sorted listings per query, valid while no mutation happened (pages are cut from them)
        self._version = 0
        self._listings: dict[tuple[Any, ...], tuple[int, list[dict[str, Any]]]] = {}
        # what happened, for tests
        self.log: list[RequestLog] = []
        self.rate_limit_used = 0
        self.primary_limited = 0
        self.secondary_limited = 0
        self.faults_served: dict[str, int] = {}

    # ------------------------------------------------------------------ mutation
    def add_repo(self, full_name: str) -> None:
        with self._lock:
            self.repos.setdefault(full_name, _Repo(full_name))

    def add_issue(
        self,
        repo: str,
        title: str | None = None,
        *,
        user: str | None = None,
        labels: tuple[str, ...] | None = None,
        body: str | None = None,
        state: str = "open",
        min_step: int = 1,
    ) -> dict[str, Any]:
        """Open (or record a closed) issue; returns a copy of it."""
        with self._lock:
            r = self._repo(repo)
            now = self._tick(min_step)
            number = r.next_number
            r.next_number += 1
            issue = {
                **self._common(repo, f"issues/{number}"),
                "repository_url": f"https://api.github.com/repos/{repo}",
                "number": number,
                "title": title or f"Issue {number} in {repo}",
                "user": self._user(user),
                "labels": [self._label(name) for name in (labels if labels is not None else self._labels())],
                "state": state,
                "state_reason": "completed" if state == "closed" else None,
                "locked": False,
                "assignee": None,
                "assignees": [],
                "milestone": None,
                "comments": 0,
                "created_at": iso(now),
                "updated_at": iso(now),
                "closed_at": iso(now) if state == "closed" else None,
                "author_association": "MEMBER",
                "body": body if body is not None else f"Body of #{number}.",
                "reactions": {"total_count": 0, "+1": 0, "-1": 0},
            }
            r.issues[number] = issue
            return _copy(issue)

    def edit_issue(self, repo: str, number: int, **fields: Any) -> dict[str, Any]:
        """Change top-level fields of an issue or PR (bumps ``updated_at``, like PATCH)."""
        with self._lock:
            r = self._repo(repo)
            issue = r.issues[number]
            now = iso(self._tick(1))
            if fields.get("state") == "closed" and issue["state"] != "closed":
                fields.setdefault("closed_at", now)
                fields.setdefault("state_reason", "completed")
            elif fields.get("state") == "open":
                fields.setdefault("closed_at", None)
                fields.setdefault("state_reason", "reopened")
            issue.update(fields, updated_at=now)
            pull = r.pulls.get(number)
            if pull is not None:
                pull.update(
                    {k: v for k, v in fields.items() if k in pull and k != "state_reason"},
                    updated_at=now,
                )
            return _copy(issue)

    def add_comment(
        self, repo: str, number: int, body: str | None = None, *, user: str | None = None
    ) -> dict[str, Any]:
        """Comment on an issue or PR; like GitHub this bumps the issue's ``updated_at``."""
        with self._lock:
            r = self._repo(repo)
            issue = r.issues[number]
            now = self._tick(1)
            comment_id = self._new_id()
            comment = {
                "id": comment_id,
                "node_id": f"IC_{comment_id}",
                "url": f"https://api.github.com/repos/{repo}/issues/comments/{comment_id}",
                "html_url": f"https://github.com/{repo}/issues/{number}#issuecomment-{comment_id}",
                "issue_url": f"https://api.github.com/repos/{repo}/issues/{number}",
                "body": body or f"Comment {comment_id} on #{number}.",
                "user": self._user(user),
                "created_at": iso(now),
                "updated_at": iso(now),
                "author_association": "CONTRIBUTOR",
                "reactions": {"total_count": 0, "+1": 0, "-1": 0},
            }
            r.comments[comment_id] = comment
            issue["comments"] += 1
            issue["updated_at"] = iso(now)
            if number in r.pulls:
                r.pulls[number]["updated_at"] = iso(now)
            return _copy(comment)

    def edit_comment(self, repo: str, comment_id: int, body: str) -> dict[str, Any]:
        with self._lock:
            comment = self._repo(repo).comments[comment_id]
            comment.update(body=body, updated_at=iso(self._tick(1)))
            return _copy(comment)

    def add_pull_request(
        self,
        repo: str,
        title: str | None = None,
        *,
        user: str | None = None,
        head: str | None = None,
        base: str = "main",
        draft: bool = False,
        merged: bool = False,
        min_step: int = 1,
    ) -> dict[str, Any]:
        """Open (or record a merged) PR; it also appears in the issues list, as on GitHub."""
        with self._lock:
            r = self._repo(repo)
            issue = self.add_issue(repo, title, user=user, labels=(), min_step=min_step)
            number = issue["number"]
            stored_issue = r.issues[number]
            pull_id = self._new_id()
            sha = hashlib.sha1(f"{repo}#{number}".encode()).hexdigest()
            merged_at = stored_issue["created_at"] if merged else None
            stored_issue["pull_request"] = {
                "url": f"https://api.github.com/repos/{repo}/pulls/{number}",
                "html_url": f"https://github.com/{repo}/pull/{number}",
                "merged_at": merged_at,
            }
            if merged:
                stored_issue.update(state="closed", closed_at=merged_at, state_reason=None)
            pull = {
                "id": pull_id,
                "node_id": f"PR_{pull_id}",
                "url": f"https://api.github.com/repos/{repo}/pulls/{number}",
                "html_url": f"https://github.com/{repo}/pull/{number}",
                "number": number,
                "state": stored_issue["state"],
                "locked": False,
                "title": stored_issue["title"],
                "user": stored_issue["user"],
                "body": stored_issue["body"],
                "labels": [],
                "milestone": None,
                "created_at": stored_issue["created_at"],
                "updated_at": stored_issue["updated_at"],
                "closed_at": stored_issue["closed_at"],
                "merged_at": merged_at,
                "merge_commit_sha": sha if merged else None,
                "assignee": None,
                "assignees": [],
                "requested_reviewers": [],
                "head": {
                    "label": f"{repo.split('/')[0]}:{head or f'feature-{number}'}",
                    "ref": head or f"feature-{number}",
                    "sha": sha,
                },
                "base": {"label": f"{repo.split('/')[0]}:{base}", "ref": base, "sha": sha[::-1]},
                "author_association": "MEMBER",
                "draft": draft,
            }
            r.pulls[number] = pull
            return _copy(pull)

    def add_release(
        self, repo: str, tag_name: str | None = None, *, prerelease: bool = False, min_step: int = 1
    ) -> dict[str, Any]:
        with self._lock:
            r = self._repo(repo)
            now = self._tick(min_step)
            release_id = self._new_id()
            tag = tag_name or f"v0.{len(r.releases) + 1}.0"
            release = {
                "id": release_id,
                "node_id": f"RE_{release_id}",
                "url": f"https://api.github.com/repos/{repo}/releases/{release_id}",
                "html_url": f"https://github.com/{repo}/releases/tag/{tag}",
                "tag_name": tag,
                "target_commitish": "main",
                "name": f"Release {tag}",
                "body": f"Changes in {tag}.",
                "draft": False,
                "prerelease": prerelease,
                "created_at": iso(now),
                "published_at": iso(now),
                "author": self._user(None),
                "assets": [],
                "tarball_url": f"https://api.github.com/repos/{repo}/tarball/{tag}",
                "zipball_url": f"https://api.github.com/repos/{repo}/zipball/{tag}",
            }
            r.releases[release_id] = release
            return _copy(release)

    def seed(
        self,
        n_issues: int = 50,
        *,
        repos: tuple[str, ...] = ("octo-org/octo-repo",),
        n_pulls: int | None = None,
        n_comments: int | None = None,
        n_releases: int | None = None,
        closed_share: float = 0.4,
    ) -> GitHubStore:
        """A realistic history per repository: issues and PRs interleaved, comments, edits, releases.

        Several objects may share one timestamp second (as on a busy repository), which
        exercises the incremental cursor's boundary handling.
        """
        n_pulls = n_issues // 3 if n_pulls is None else n_pulls
        n_comments = n_issues * 2 if n_comments is None else n_comments
        n_releases = max(1, n_issues // 20) if n_releases is None else n_releases
        with self._lock:
            for repo in repos:
                self.add_repo(repo)
                kinds = ["issue"] * n_issues + ["pull"] * n_pulls
                self._rng.shuffle(kinds)
                for kind in kinds:
                    if kind == "issue":
                        closed = self._rng.random() < closed_share
                        self.add_issue(repo, state="closed" if closed else "open", min_step=0)
                    else:
                        self.add_pull_request(repo, merged=self._rng.random() < 0.5, min_step=0)
                numbers = sorted(self._repo(repo).issues)
                for _ in range(n_comments):
                    self.add_comment(repo, self._rng.choice(numbers))
                for _ in range(n_issues // 10):
                    number = self._rng.choice(numbers)
                    self.edit_issue(
                        repo, number, title=f"{self._repo(repo).issues[number]['title']} (edited)"
                    )
                for _ in range(n_releases):
                    self.add_release(repo, min_step=0)
        return self

    def secondary_limit_next(self, count: int = 1, status: int = 403, retry_after: float = 0.0) -> None:
        """Answer the next ``count`` requests with a secondary rate limit."""
        with self._lock:
            self._secondary.extend((status, retry_after) for _ in range(count))

    # ------------------------------------------------------------------- queries
    def truth(self, repo: str, table: str) -> list[dict[str, Any]]:
        """Copies of every object of a table (issues, pull_requests, issue_comments, releases)."""
        with self._lock:
            r = self._repo(repo)
            objects = {
                "issues": r.issues,
                "pull_requests": r.pulls,
                "issue_comments": r.comments,
                "releases": r.releases,
            }[table]
            return [_copy(obj) for obj in objects.values()]

    def count(self, table: str) -> int:
        return sum(len(self.truth(repo, table)) for repo in self.repos)

    @property
    def conditional_hits(self) -> int:
        return sum(1 for entry in self.log if entry.status == 304)

    # ------------------------------------------------------------------ serving
    def list_body(
        self, repo: str, endpoint: str, params: dict[str, str], api_root: str = "https://api.github.com"
    ) -> tuple[bytes, dict[str, str]]:
        """The JSON page and its ``Link`` header (absolute URLs under ``api_root``) for one request."""
        per_page = _int(params, "per_page", DEFAULT_PER_PAGE)
        page = _int(params, "page", 1)
        if not 1 <= per_page <= MAX_PER_PAGE:
            per_page = min(max(per_page, 1), MAX_PER_PAGE)  # GitHub clamps silently
        if page < 1:
            raise GitHubError(422, "Validation Failed: page must be >= 1")
        with self._lock:
            r = self._repo_or_404(repo)
            key = (repo, endpoint, *(params.get(k) for k in ("state", "sort", "direction", "since")))
            cached = self._listings.get(key)
            if cached is None or cached[0] != self._version:
                cached = (self._version, self._select(r, endpoint, params))
                self._listings[key] = cached
            items = cached[1]
            total_pages = max(1, math.ceil(len(items) / per_page))
            if self.empty_last_page and items and len(items) % per_page == 0:
                total_pages += 1  # a next link to an empty page, as GitHub sometimes sends
            window = items[(page - 1) * per_page : page * per_page]
            if self.repeat_boundary and page > 1 and (page - 1) * per_page - 1 < len(items):
                window = [items[(page - 1) * per_page - 1], *window]
            body = b"[" + b",".join(orjson.dumps(obj) for obj in window) + b"]"
        links = []
        base = f"{api_root}/repos/{repo}/{endpoint}"
        if page < total_pages:
            links.append((page + 1, "next"))
            links.append((total_pages, "last"))
        if page > 1:
            links.append((1, "first"))
            links.append((page - 1, "prev"))
        headers = {}
        if links:
            headers["Link"] = ", ".join(
                f'<{base}?{urlencode({**params, "page": str(n)})}>; rel="{rel}"' for n, rel in links
            )
        return body, headers

    def run_page_hooks(self, repo: str, endpoint: str, page: int) -> None:
        for hook in list(self.on_page):
            hook(repo, endpoint, page)

    def charge(self, now: float) -> tuple[bool, dict[str, str]]:
        """Spend one request of the primary budget; False (and headers) when it is exhausted."""
        with self._lock:
            if now >= self._window_reset:
                reset = now + self.rate_limit_window
                self._window_reset = reset if self.rate_limit_window < 1 else math.ceil(reset)
                self._window_used = 0
            allowed = self._window_used < self.rate_limit
            if allowed:
                self._window_used += 1
                self.rate_limit_used += 1
            else:
                self.primary_limited += 1
            return allowed, self.rate_headers()

    def rate_headers(self) -> dict[str, str]:
        with self._lock:
            reset = self._window_reset or math.ceil(time.time() + self.rate_limit_window)
            return {
                "x-ratelimit-limit": str(self.rate_limit),
                "x-ratelimit-remaining": str(max(0, self.rate_limit - self._window_used)),
                "x-ratelimit-used": str(self._window_used),
                "x-ratelimit-reset": f"{reset:.3f}" if self.rate_limit_window < 1 else str(int(reset)),
                "x-ratelimit-resource": "core",
            }

    def take_secondary(self) -> tuple[int, float] | None:
        with self._lock:
            if self._secondary:
                self.secondary_limited += 1
                return self._secondary.pop(0)
            return None

    def draw_fault(self) -> str | None:
        with self._lock:
            if self.fault_rate <= 0 or self._fault_rng.random() >= self.fault_rate:
                return None
            kind = self._fault_rng.choice(self.faults)
            self.faults_served[kind] = self.faults_served.get(kind, 0) + 1
            return kind

    def record(self, entry: RequestLog) -> None:
        with self._lock:
            self.log.append(entry)

    # ---------------------------------------------------------------- internals
    def _select(self, r: _Repo, endpoint: str, params: dict[str, str]) -> list[dict[str, Any]]:
        state = params.get("state", "open")
        if endpoint == "issues":
            objects = list(r.issues.values())
            sort = params.get("sort", "created")
            direction = params.get("direction", "desc")
        elif endpoint == "pulls":
            objects = list(r.pulls.values())
            sort = params.get("sort", "created")
            # GitHub: desc when sort is created or absent, otherwise asc
            direction = params.get("direction", "desc" if sort == "created" else "asc")
        elif endpoint == "issues/comments":
            objects = list(r.comments.values())
            sort = params.get("sort", "created")
            direction = params.get("direction", "asc") if "sort" in params else "asc"
            state = "all"
        else:  # releases
            objects = list(r.releases.values())
            sort, direction, state = "created", "desc", "all"
        if state not in ("open", "closed", "all"):
            raise GitHubError(422, f"Validation Failed: state {state!r}")
        if state != "all":
            objects = [obj for obj in objects if obj.get("state") == state]
        if "since" in params and endpoint in ("issues", "issues/comments"):
            since = _parse_since(params["since"])
            objects = [obj for obj in objects if obj["updated_at"] >= since]
        key = {"created": "created_at", "updated": "updated_at", "comments": "comments"}.get(sort)
        if key is None:
            raise GitHubError(422, f"Validation Failed: sort {sort!r}")
        objects.sort(key=lambda obj: (obj.get(key) or 0, obj["id"]), reverse=direction == "desc")
        return objects

    def _repo(self, repo: str) -> _Repo:
        self.add_repo(repo)
        return self.repos[repo]

    def _repo_or_404(self, repo: str) -> _Repo:
        if repo not in self.repos:
            raise GitHubError(404, "Not Found")
        return self.repos[repo]

    def _tick(self, min_step: int) -> datetime:
        self._version += 1  # every mutation ticks: cached listings are stale now
        self._clock += timedelta(seconds=self._rng.randint(min_step, max(min_step, 90)))
        return self._clock

    def _new_id(self) -> int:
        self._next_id += self._rng.randint(1, 7)
        return self._next_id

    def _common(self, repo: str, path: str) -> dict[str, Any]:
        object_id = self._new_id()
        return {
            "id": object_id,
            "node_id": f"I_{object_id}",
            "url": f"https://api.github.com/repos/{repo}/{path}",
            "html_url": f"https://github.com/{repo}/{path}",
        }

    def _user(self, login: str | None) -> dict[str, Any]:
        login = login or self._rng.choice(USERS)
        return {"login": login, "id": USERS.index(login) + 1 if login in USERS else 999, "type": "User"}

    def _labels(self) -> tuple[str, ...]:
        return tuple(self._rng.sample(LABELS, self._rng.randint(0, 2)))

    @staticmethod
    def _label(name: str) -> dict[str, Any]:
        return {"id": LABELS.index(name) + 1 if name in LABELS else 0, "name": name, "color": "ededed"}


def _copy(obj: dict[str, Any]) -> dict[str, Any]:
    return orjson.loads(orjson.dumps(obj))


def _int(params: dict[str, str], name: str, default: int) -> int:
    try:
        return int(params.get(name, default))
    except ValueError:
        raise GitHubError(422, f"Validation Failed: {name} must be an integer") from None


def _parse_since(value: str) -> str:
    """``since`` as the canonical ``...Z`` string, so it compares with stored timestamps."""
    try:
        return iso(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError:
        raise GitHubError(422, f"Validation Failed: since {value!r} is not ISO 8601") from None


class _GitHubHandler(QuietHandler):
    server: Any  # a LoopbackServer carrying ``store`` and ``token``
    _entry: RequestLog | None = None
    server_version = "github-standin/1"

    def do_GET(self) -> None:
        store = self.server.store
        url = urlsplit(self.path)
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        # logged before the answer goes out, so a client that got it sees it in the log
        self._entry = RequestLog(url.path, params, self.headers.get("If-None-Match"), 500, 0)
        try:
            self._authenticate()
            secondary = store.take_secondary()
            if secondary is not None:
                status, retry_after = secondary
                raise GitHubError(
                    status,
                    "You have exceeded a secondary rate limit. "
                    "Please wait a few minutes before you try again.",
                    {"retry-after": f"{retry_after:g}"},
                )
            fault = store.draw_fault()
            if fault is not None:
                self._fault(fault, url.path, params)
                return
            repo, endpoint = self._route(url.path)
            if repo in store.forbidden:
                raise GitHubError(403, "Resource not accessible by personal access token")
            body, headers = store.list_body(repo, endpoint, params, self._api_root())
            etag = 'W/"' + hashlib.sha256(body).hexdigest() + '"'
            headers["ETag"] = etag
            if_none_match = self._entry.if_none_match
            if if_none_match and etag in [tag.strip() for tag in if_none_match.split(",")]:
                self._send(304, b"", {**headers, **store.rate_headers()})  # no rate-limit cost
                return
            allowed, rate = store.charge(time.time())
            if not allowed:
                raise GitHubError(
                    403, "API rate limit exceeded for user ID 1. (But here's the good news: ...)", rate
                )
            # "updated while being paged": hooks run after this page was cut, before it is sent
            store.run_page_hooks(repo, endpoint, _int(params, "page", 1))
            self._entry.cost = 1
            self._send(200, body, {**headers, **rate})
        except GitHubError as exc:
            headers = dict(exc.headers)
            if exc.status != 401 and "x-ratelimit-remaining" not in headers:
                headers.update(store.rate_headers())
            self._send(exc.status, exc.body(), headers)
        except Exception as exc:  # pragma: no cover - a bug in the stand-in
            self._send(500, GitHubError(500, f"internal error: {exc!r}").body())

    def _method_not_allowed(self) -> None:
        self._send(404, GitHubError(404, "Not Found").body())

    do_POST = do_PUT = do_PATCH = do_DELETE = _method_not_allowed

    def _authenticate(self) -> None:
        scheme, _, token = self.headers.get("Authorization", "").partition(" ")
        if scheme.lower() not in ("bearer", "token") or token.strip() != self.server.token:
            raise GitHubError(401, "Bad credentials")

    def _api_root(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{self.headers.get('Host') or f'{host}:{port}'}"

    @staticmethod
    def _route(path: str) -> tuple[str, str]:
        parts = [p for p in path.split("/") if p]
        if len(parts) >= 4 and parts[0] == "repos":
            repo, endpoint = f"{parts[1]}/{parts[2]}", "/".join(parts[3:])
            if endpoint in ENDPOINTS:
                return repo, endpoint
        raise GitHubError(404, "Not Found")

    def _fault(self, kind: str, path: str, params: dict[str, str]) -> None:
        store = self.server.store
        if kind == "429":
            self._send(
                429,
                GitHubError(429, "Too many requests").body(),
                {"retry-after": f"{store.fault_retry_after:g}"},
            )
            return
        if kind in ("500", "502"):
            self._send(int(kind), GitHubError(int(kind), "Server Error").body())
            return
        if kind == "timeout":
            if self._entry is not None:
                self._entry.status = 0  # no answer at all
                store.record(self._entry)
                self._entry = None
            time.sleep(store.timeout_delay)  # the client has given up by now
            self.close_connection = True
            return
        # truncated: a 200 whose JSON body stops half way
        repo, endpoint = self._route(path)
        body, headers = store.list_body(repo, endpoint, params, self._api_root())
        self._send(200, body[: max(1, len(body) // 2)], headers)

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        entry = getattr(self, "_entry", None)
        if entry is not None:
            entry.status = status
            self.server.store.record(entry)
            self._entry = None
        try:
            self.send_response(status)
            if status != 304:
                self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            if body:
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


@contextmanager
def serve_github(store: GitHubStore, token: str) -> Iterator[str]:
    """Serve ``store`` on 127.0.0.1 (free port) in a daemon thread; yield the base URL."""
    if not token:
        raise ValueError("token must be a non-empty string")
    server = LoopbackServer(_GitHubHandler, store=store, token=token)
    with serving(server):
        yield server.base_url


def demo_store(
    seed: int = 7, repos: tuple[str, ...] = ("octo-org/octo-repo", "octo-org/widgets")
) -> GitHubStore:
    """The deterministic demo data set: two repositories with a few hundred objects."""
    return GitHubStore(seed).seed(120, repos=repos)
