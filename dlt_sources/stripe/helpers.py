"""HTTP client for Stripe list endpoints: Bearer auth, Stripe's retry hint and cursor pagination.

Why a small hand-written client instead of the `stripe` SDK: we only need a handful of
GET list calls, want orjson parsing, and the shared retry and error behaviour of
`dlt_sources.common.http` (messages name our settings, never the key).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

import orjson
import requests

from dlt_sources.common.http import ApiAuthError, ApiClient, ApiError, SourceSettings, redact

from . import settings

Page = list[dict[str, Any]]

NAMES = SourceSettings(
    source="stripe",
    credential_setting=settings.API_KEY_SETTING,
    base_url_setting=settings.BASE_URL_SETTING,
)

# Stripe-shaped keys are masked even when they are not ours (e.g. echoed in an error).
_KEY_PATTERN = re.compile(r"\b(?:sk|rk|pk)_(?:test|live)_\S+")


class StripeClient(ApiClient):
    """`GET /v1/<endpoint>` lists, following `starting_after` while `has_more`."""

    def __init__(self, api_key: str, base_url: str = settings.DEFAULT_BASE_URL, **options: Any) -> None:
        if not api_key or not api_key.strip():
            raise ApiAuthError(f"stripe source: the API key is empty; set {NAMES.credential_hint()}.")
        options.setdefault("timeout", settings.REQUEST_TIMEOUT)
        options.setdefault("max_retries", settings.MAX_RETRIES)
        options.setdefault("backoff_factor", settings.BACKOFF_FACTOR)
        options.setdefault("max_backoff", settings.MAX_BACKOFF)
        super().__init__(
            base_url,
            NAMES,
            headers={"Authorization": f"Bearer {api_key.strip()}", "User-Agent": settings.USER_AGENT},
            secrets=[api_key.strip()],
            **options,
        )

    def paginate(
        self,
        endpoint: str,
        params: Mapping[str, Any] | None = None,
        page_size: int = settings.PAGE_SIZE,
    ) -> Iterator[Page]:
        """Pages of one list, newest first; each object once per walk.

        Stripe's docs leave room for paging quirks, all handled here: a page that repeats
        an object of an earlier page (dropped), and ``has_more: true`` followed by an
        empty page (the walk ends).
        """
        query: dict[str, Any] = {**(params or {}), "limit": page_size}
        seen: set[str] = set()
        while True:
            body = self.get_json(f"/v1/{endpoint}", query)
            if not isinstance(body, dict) or body.get("object") != "list":
                raise ApiError(f"stripe source: GET /v1/{endpoint} did not answer a list object")
            data: Page = body.get("data") or []
            # an object without an id is kept (and quarantined by columns.to_arrow), never "seen"
            fresh = [obj for obj in data if obj.get("id") is None or obj["id"] not in seen]
            seen.update(obj["id"] for obj in fresh if obj.get("id") is not None)
            if fresh:
                yield fresh
            if not body.get("has_more") or not data:
                return
            last = data[-1].get("id")
            if last is None or query.get("starting_after") == last:
                raise ApiError(f"stripe source: pagination of /v1/{endpoint} did not advance")
            query["starting_after"] = last

    def should_retry(self, response: requests.Response) -> bool:
        """Stripe's `Stripe-Should-Retry` header wins over the status code."""
        hint = response.headers.get("Stripe-Should-Retry")
        if hint is not None:
            return hint.lower() == "true"
        return super().should_retry(response)

    def error_text(self, response: requests.Response) -> str:
        """Stripe's `error.type: error.message`, redacted and kept short."""
        try:
            error = orjson.loads(response.content).get("error") or {}
            text = f"{error.get('type', 'error')}: {error.get('message', '')}".strip()
        except (orjson.JSONDecodeError, AttributeError):
            return super().error_text(response)
        return _KEY_PATTERN.sub("***", redact(text, self._secrets))
