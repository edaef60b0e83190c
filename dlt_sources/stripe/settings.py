"""Defaults for the Stripe source, kept in one place so docs, tests and code agree."""

from __future__ import annotations

DEFAULT_BASE_URL = "https://api.stripe.com"
"""Production API; tests and the demo point `sources.stripe.base_url` at a local stand-in."""

ENDPOINTS: tuple[str, ...] = ("customers", "charges", "refunds")
"""List endpoints loaded as resources (one table each, named like the endpoint)."""

PAGE_SIZE = 100
"""Stripe's maximum `limit`; fewer requests per sync."""
MAX_PAGE_SIZE = 100

INITIAL_CREATED = 0
"""Unix seconds the first sync starts from: 0 loads the full history."""

REQUEST_TIMEOUT = 30.0
"""Seconds for connect and read; Stripe list calls answer well within this."""

MAX_RETRIES = 3
"""Retries (after the first attempt) for 429, 5xx and connection errors."""
BACKOFF_FACTOR = 0.5
"""Exponential backoff base in seconds: 0.5, 1, 2, ... unless `Retry-After` says otherwise."""
MAX_BACKOFF = 30.0
"""Cap for any single wait, including a server-sent `Retry-After`."""

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
AUTH_STATUSES = frozenset({401, 403})

API_KEY_SETTING = "sources.stripe.api_key"
API_KEY_ENV = "SOURCES__STRIPE__API_KEY"
BASE_URL_SETTING = "sources.stripe.base_url"
BASE_URL_ENV = "SOURCES__STRIPE__BASE_URL"

USER_AGENT = "elt-platform-dlt-stripe/0.1"
