"""HTTP client for Stripe list endpoints: auth, retries and cursor pagination.

Why a small hand-written client instead of the `stripe` SDK: we only need a handful of
GET list calls, want orjson parsing, full control over retries, and error messages that
name our config settings but never echo the secret key.
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Self

import orjson
import requests

from dlt_sources.errors import SourceError, SourceUnreachable

from . import settings

Page = list[dict[str, Any]]

_KEY_PATTERN = re.compile(r"\b(?:sk|rk|pk)_(?:test|live)_\S+")


class StripeSourceError(SourceError):
    """Base class for errors raised by the Stripe source."""


class StripeAuthError(StripeSourceError):
    """The API rejected the key (401/403); retrying cannot help."""


class StripeConnectionError(StripeSourceError, SourceUnreachable):
    """The API could not be reached (DNS, refused, timeout) after all retries."""


class StripeAPIError(StripeSourceError):
    """Any other non-2xx answer, or retryable errors that outlasted the retries."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def redact(text: str, secret: str | None = None) -> str:
    """Mask Stripe-style keys (and `secret` itself) so they never reach logs or errors."""
    if secret:
        text = text.replace(secret, "***")
    return _KEY_PATTERN.sub("***", text)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def validate_settings(api_key: str, base_url: str) -> None:
    """Fail before any request on an empty key or a non-http(s) base URL."""
    if not api_key or not api_key.strip():
        raise StripeAuthError(
            f"Stripe source: the API key is empty; set `{settings.API_KEY_SETTING}` "
            f"(env {settings.API_KEY_ENV})."
        )
    if not base_url or not base_url.startswith(("http://", "https://")):
        raise StripeConnectionError(
            f"Stripe source: `{settings.BASE_URL_SETTING}` (env {settings.BASE_URL_ENV}) "
            f"must be an http(s) URL, got {base_url!r}."
        )


class StripeClient:
    """Bearer-authenticated `requests.Session` wrapper for `GET /v1/<endpoint>` lists."""

    def __init__(
        self,
        api_key: str,
        base_url: str = settings.DEFAULT_BASE_URL,
        *,
        timeout: float = settings.REQUEST_TIMEOUT,
        max_retries: int = settings.MAX_RETRIES,
        backoff_factor: float = settings.BACKOFF_FACTOR,
        max_backoff: float = settings.MAX_BACKOFF,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        validate_settings(api_key, base_url)
        self._api_key = api_key.strip()
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_retries = max(0, max_retries)
        self.backoff_factor = backoff_factor
        self.max_backoff = max_backoff
        self._sleep = sleep
        self.session = session or requests.Session()
        self.session.headers.update(
            {
                "Authorization": f"Bearer {self._api_key}",
                "Accept": "application/json",
                "User-Agent": settings.USER_AGENT,
            }
        )
        self.requests_made = 0

    def __repr__(self) -> str:
        """Never show the key, e.g. in tracebacks that render locals."""
        return f"StripeClient(base_url={self.base_url!r})"

    def close(self) -> None:
        """Release pooled connections."""
        self.session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ requests
    def get_json(self, path: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """GET `path` with retries; returns the decoded JSON object."""
        url = f"{self.base_url}/{path.lstrip('/')}"
        attempt = 0
        while True:
            try:
                self.requests_made += 1
                response = self.session.get(url, params=params, timeout=self.timeout)
            except (requests.ConnectionError, requests.Timeout) as exc:
                if attempt < self.max_retries:
                    self._sleep(self._backoff(attempt, None))
                    attempt += 1
                    continue
                raise StripeConnectionError(
                    f"Stripe source: could not reach {url} after {attempt + 1} attempt(s) "
                    f"({type(exc).__name__}); check `{settings.BASE_URL_SETTING}` "
                    f"(env {settings.BASE_URL_ENV}) and network access."
                ) from exc

            status = response.status_code
            if 200 <= status < 300:
                return orjson.loads(response.content)
            if status in settings.AUTH_STATUSES:
                raise StripeAuthError(
                    f"Stripe source: {url} answered HTTP {status} "
                    f"({self._error_text(response)}); check the secret "
                    f"`{settings.API_KEY_SETTING}` (env {settings.API_KEY_ENV})."
                )
            if self._should_retry(response) and attempt < self.max_retries:
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                self._sleep(self._backoff(attempt, retry_after))
                attempt += 1
                continue
            tried = f" after {attempt + 1} attempts" if attempt else ""
            raise StripeAPIError(
                f"Stripe source: GET {url} failed with HTTP {status}{tried}: {self._error_text(response)}",
                status=status,
            )

    def paginate(
        self,
        endpoint: str,
        params: Mapping[str, Any] | None = None,
        page_size: int = settings.PAGE_SIZE,
    ) -> Iterator[Page]:
        """Yield pages of `GET /v1/<endpoint>` following `starting_after` while `has_more`."""
        query: dict[str, Any] = {**(params or {}), "limit": page_size}
        while True:
            body = self.get_json(f"/v1/{endpoint}", query)
            data: Page = body.get("data") or []
            if data:
                yield data
            if not body.get("has_more") or not data:
                return
            query["starting_after"] = data[-1]["id"]

    # ------------------------------------------------------------------ internals
    @staticmethod
    def _should_retry(response: requests.Response) -> bool:
        """Stripe's `Stripe-Should-Retry` header wins; otherwise 429 and 5xx retry."""
        hint = response.headers.get("Stripe-Should-Retry")
        if hint is not None:
            return hint.lower() == "true"
        return response.status_code in settings.RETRY_STATUSES

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(self.max_backoff, retry_after)
        return min(self.max_backoff, self.backoff_factor * (2**attempt))

    def _error_text(self, response: requests.Response) -> str:
        """Stripe's `error.type: error.message`, redacted and kept short."""
        try:
            error = orjson.loads(response.content).get("error") or {}
            text = f"{error.get('type', 'error')}: {error.get('message', '')}".strip()
        except (orjson.JSONDecodeError, AttributeError):
            text = response.text[:200] or response.reason or ""
        return redact(text, self._api_key)
