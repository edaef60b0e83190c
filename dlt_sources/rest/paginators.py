"""The paginators of dlt's ``rest_api`` config, over already-decoded (orjson) page bodies.

Why our own: dlt's paginator classes read ``response.json()``, which decodes every page
a second time with the standard library (the fast path decodes once, with orjson).
Semantics follow dlt's classes of the same ``type``; each ``advance`` returns the next
request as ``(url, params)`` or None when the listing is exhausted.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urljoin

import requests

Request = tuple[str, dict[str, Any] | None]


def get_path(body: Any, path: str) -> Any:
    """Value at a dotted path (``a.b.0.c``; a leading ``$.`` is allowed), or None."""
    if path in ("$", ""):
        return body
    value = body
    for part in path.removeprefix("$.").split("."):
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


class Paginator:
    def first(self, url: str, params: dict[str, Any]) -> Request:
        return url, params

    def body_paths(self) -> list[str]:
        """The body fields ``advance`` reads (a typed decoder keeps only these and the records)."""
        return []

    def advance(
        self, url: str, params: dict[str, Any] | None, response: requests.Response, body: Any, n: int
    ) -> Request | None:
        return None


class SinglePage(Paginator):
    pass


class JsonLink(Paginator):
    def __init__(self, next_url_path: str = "next") -> None:
        self.next_url_path = next_url_path

    def body_paths(self) -> list[str]:
        return [self.next_url_path]

    def advance(self, url, params, response, body, n):  # type: ignore[no-untyped-def]
        link = get_path(body, self.next_url_path)
        return (urljoin(response.url, link), None) if link else None


class HeaderLink(Paginator):
    def __init__(self, links_next_key: str = "next") -> None:
        self.links_next_key = links_next_key

    def advance(self, url, params, response, body, n):  # type: ignore[no-untyped-def]
        link = response.links.get(self.links_next_key, {}).get("url")
        return (urljoin(response.url, link), None) if link else None


class Cursor(Paginator):
    def __init__(self, cursor_path: str = "cursors.next", cursor_param: str = "cursor") -> None:
        self.cursor_path = cursor_path
        self.cursor_param = cursor_param

    def body_paths(self) -> list[str]:
        return [self.cursor_path]

    def advance(self, url, params, response, body, n):  # type: ignore[no-untyped-def]
        cursor = get_path(body, self.cursor_path)
        if not cursor:
            return None
        return url, {**(params or {}), self.cursor_param: cursor}


class _Counting(Paginator):
    """Shared logic of offset and page-number paging: a counter sent as a query param."""

    param: str
    value: int
    step: int
    maximum: int | None
    total_path: str | None
    stop_after_empty_page: bool

    def first(self, url: str, params: dict[str, Any]) -> Request:
        return url, {**params, self.param: self.value}

    def _past_total(self, total: Any) -> bool:
        raise NotImplementedError

    def body_paths(self) -> list[str]:
        return [self.total_path] if self.total_path else []

    def advance(self, url, params, response, body, n):  # type: ignore[no-untyped-def]
        if n == 0 and self.stop_after_empty_page:
            return None
        self.value += self.step
        total = get_path(body, self.total_path) if self.total_path else None
        if total is not None and self._past_total(int(total)):
            return None
        if self.maximum is not None and self.value >= self.maximum:
            return None
        return url, {**(params or {}), self.param: self.value}


class Offset(_Counting):
    def __init__(
        self,
        limit: int,
        offset: int = 0,
        offset_param: str = "offset",
        limit_param: str = "limit",
        total_path: str | None = "total",
        maximum_offset: int | None = None,
        stop_after_empty_page: bool = True,
    ) -> None:
        self.limit, self.limit_param = limit, limit_param
        self.param, self.value, self.step = offset_param, offset, limit
        self.maximum, self.total_path = maximum_offset, total_path
        self.stop_after_empty_page = stop_after_empty_page

    def first(self, url: str, params: dict[str, Any]) -> Request:
        return url, {**params, self.limit_param: self.limit, self.param: self.value}

    def _past_total(self, total: int) -> bool:
        return self.value >= total


class PageNumber(_Counting):
    def __init__(
        self,
        base_page: int = 0,
        page: int | None = None,
        page_param: str = "page",
        total_path: str | None = "total",
        maximum_page: int | None = None,
        stop_after_empty_page: bool = True,
    ) -> None:
        self.base_page = base_page
        self.param, self.value, self.step = page_param, base_page if page is None else page, 1
        self.maximum, self.total_path = maximum_page, total_path
        self.stop_after_empty_page = stop_after_empty_page

    def _past_total(self, total: int) -> bool:
        # total is the number of pages, counted from base_page
        return self.value >= total + self.base_page


_KINDS: dict[str, type[Paginator]] = {
    "single_page": SinglePage,
    "json_link": JsonLink,
    "header_link": HeaderLink,
    "cursor": Cursor,
    "offset": Offset,
    "page_number": PageNumber,
}


def make_paginator(spec: dict[str, Any] | None) -> Paginator:
    """A fresh paginator from a validated ``paginator`` mapping (None: a single page)."""
    if not spec:
        return SinglePage()
    options = {key: value for key, value in spec.items() if key != "type"}
    return _KINDS[spec["type"]](**options)
