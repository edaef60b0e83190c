"""Defaults and setting names for the GitHub source, in one place so docs, tests and code agree."""

from __future__ import annotations

DEFAULT_BASE_URL = "https://api.github.com"
"""Public GitHub; GitHub Enterprise Server uses ``https://<host>/api/v3``; tests use a local stand-in."""

API_VERSION = "2022-11-28"
"""Pinned REST API version (``X-GitHub-Api-Version``), so field shapes don't drift under us."""
MEDIA_TYPE = "application/vnd.github+json"

RESOURCES: tuple[str, ...] = ("issues", "pull_requests", "issue_comments", "releases")
"""Tables this source loads, one per endpoint."""

PAGE_SIZE = 100
"""``per_page``; 100 is GitHub's maximum and minimises requests (and rate-limit cost)."""
MAX_PAGE_SIZE = 100

BATCH_ROWS = 5000
"""Pages are combined into Arrow tables of about this many rows before dlt sees them: dlt
spends ~10 ms per yielded item on schema hints and the incremental, whatever its size."""

REQUEST_TIMEOUT = 30.0
MAX_RETRIES = 5
"""Retries for 5xx, 429 without rate-limit headers, timeouts and truncated bodies."""
BACKOFF_FACTOR = 0.5
MAX_BACKOFF = 30.0

MAX_RATE_LIMIT_WAIT = 900.0
"""Longest single rate-limit wait (seconds) we sit out; a longer one fails transiently instead,
so a worker is not blocked for up to an hour waiting for the primary limit to reset."""
SECONDARY_RATE_LIMIT_WAIT = 60.0
"""Wait when a secondary limit gives neither ``retry-after`` nor a reset time (GitHub: at least a minute)."""
MAX_RATE_LIMIT_WAITS = 20
"""Rate-limit waits per request before giving up (each wait is also capped by MAX_RATE_LIMIT_WAIT)."""

ACCESS_TOKEN_SETTING = "sources.github.access_token"
ACCESS_TOKEN_ENV = "SOURCES__GITHUB__ACCESS_TOKEN"
BASE_URL_SETTING = "sources.github.base_url"
REPOSITORIES_SETTING = "sources.github.repositories"
MAX_RATE_LIMIT_WAIT_SETTING = "sources.github.max_rate_limit_wait"

USER_AGENT = "elt-platform-dlt-github/0.1"
"""GitHub rejects requests without a User-Agent."""

SCHEMA_POLICY = "evolve"
"""`sources.github.schema_policy`: what a field whose type changed does (evolve | discard | freeze)."""
