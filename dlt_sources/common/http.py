"""The HTTP client every API source uses: retries, backoff and errors that name settings.

Why one client: each SaaS source needs the same behaviour — 429/5xx/timeouts and
truncated or invalid JSON bodies retried with exponential backoff that honours
``Retry-After``; 401/403 failing at once; messages that name the source and the
setting to fix but never a secret (neither the credential nor secrets in query
strings). A source subclasses :class:`ApiClient` only for its own quirks
(error body shape, vendor retry hints, pagination).

Encryption in transit is the client's too: the server's certificate is verified (against
``sources.<name>.ca_bundle`` when set, else the system's CAs) and a refused one fails at
once naming that setting; plain ``http://`` is refused before any request unless the host
is this machine or ``sources.<name>.allow_insecure_http`` is true.
"""

from __future__ import annotations

import email.utils
import ipaddress
import random
import ssl
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit, urlunsplit

import dlt
import orjson
import requests
import urllib3

from dlt_sources.common.rejects import tolerant_loads
from dlt_sources.errors import WRONG_HOST, SourceError, SourceUnreachable, refused_certificate

RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
AUTH_STATUSES = frozenset({401, 403})


class ApiError(SourceError):
    """An API answered with an error that outlasted the retries (or is not retryable)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status

    @property
    def transient(self) -> bool:
        return self.status in RETRY_STATUSES


class ApiAuthError(SourceError):
    """The API rejected the credential (401/403): retrying cannot help."""


class ApiUnreachable(SourceUnreachable):
    """The API could not be reached (DNS, refused, timeout) after all retries."""


class InsecureTransport(SourceError):
    """The API's certificate was refused, or its URL is plain http to another machine:
    a setting to fix, never retried."""


@dataclass(frozen=True)
class SourceSettings:
    """Names used in error messages: what a person must look at to fix a failure."""

    source: str
    credential_setting: str
    base_url_setting: str

    @staticmethod
    def env_name(setting: str) -> str:
        return setting.upper().replace(".", "__")

    def hint(self, setting: str) -> str:
        return f"`{setting}` (env {self.env_name(setting)})"

    def credential_hint(self) -> str:
        return self.hint(self.credential_setting)

    def base_url_hint(self) -> str:
        return self.hint(self.base_url_setting)

    @property
    def ca_bundle_setting(self) -> str:
        return f"sources.{self.source}.ca_bundle"

    @property
    def insecure_http_setting(self) -> str:
        return f"sources.{self.source}.allow_insecure_http"


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine: ``localhost``, 127.0.0.0/8 or ::1."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_transport(url: str, names: SourceSettings, allow_insecure_http: bool, where: str) -> None:
    """Refuse plain http to another machine: the credential and the data would cross the network
    unencrypted. Loopback stays allowed (the demo's and the tests' stand-ins); ``where`` says
    which setting or link gave the URL."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme == "http" and not allow_insecure_http and not is_loopback(host):
        raise InsecureTransport(
            f"{names.source} source: {where} is plain http to {host}, which would send the credential "
            f"and the data unencrypted; use https://, or set {names.hint(names.insecure_http_setting)} "
            "to true to allow it."
        )


def checked_ca_bundle(ca_bundle: str | None, names: SourceSettings) -> str | None:
    """The CA file (or folder) the server's certificate is verified against; None: the system's."""
    if ca_bundle and not Path(ca_bundle).exists():
        raise InsecureTransport(
            f"{names.source} source: {names.hint(names.ca_bundle_setting)} names {ca_bundle}, which "
            "does not exist; set it to the PEM file of the CA that signs the API's certificate."
        )
    return ca_bundle or None


def transport_settings(source: str) -> dict[str, Any]:
    """``sources.<source>.ca_bundle`` and ``.allow_insecure_http`` as :class:`ApiClient` keyword
    arguments, for a source that looks its settings up by name (a declarative one); a Python
    source takes them as arguments of its ``@dlt.source`` function instead."""
    return {
        "ca_bundle": dlt.config.get(f"sources.{source}.ca_bundle", str),
        "allow_insecure_http": bool(dlt.config.get(f"sources.{source}.allow_insecure_http", bool)),
    }


def _verification_error(error: object, depth: int = 0) -> ssl.SSLCertVerificationError | None:
    """The certificate check's own error inside what requests raised (urllib3 nests it in
    ``args`` and ``reason``)."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return error
    if not isinstance(error, BaseException) or depth > 4:
        return None
    for inner in (*error.args, getattr(error, "reason", None)):
        if (found := _verification_error(inner, depth + 1)) is not None:
            return found
    return None


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date)."""
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


def redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def safe_url(url: str) -> str:
    """The URL without its query string, which may carry tokens."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _read_body(response: requests.Response) -> bytes:
    """The whole body of a streamed response, in one read; errors as requests raises them.

    Why not ``response.content``: requests reads it in 10 kB chunks through a generator,
    ~0.3 ms per 300 kB page, a tenth of what a REST load spends per page. A body cut
    short (the server closed early) or stalled is a ``ConnectionError`` / ``Timeout``,
    retried like a failed request (``.content`` raises ``ChunkedEncodingError`` for it).
    Once the body is read, urllib3 puts the connection back in the pool (keep-alive).
    """
    try:
        content = response.raw.read(decode_content=True)
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        response.close()  # a broken connection is not reused
        if isinstance(exc, urllib3.exceptions.ReadTimeoutError):
            raise requests.Timeout(exc, response=response) from None
        raise requests.ConnectionError(exc, response=response) from None
    # what ``.content`` sets, so ``response.text`` and ``.json()`` keep working for callers
    response._content, response._content_consumed = content, True
    return content


class ApiClient:
    """A ``requests.Session`` with retries, backoff and setting-naming errors."""

    def __init__(
        self,
        base_url: str,
        names: SourceSettings,
        *,
        headers: Mapping[str, str] | None = None,
        secrets: Iterable[str] = (),
        timeout: float = 30.0,
        max_retries: int = 3,
        backoff_factor: float = 0.5,
        max_backoff: float = 30.0,
        ca_bundle: str | None = None,
        allow_insecure_http: bool = False,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not base_url or not base_url.startswith(("http://", "https://")):
            raise SourceError(
                f"{names.source} source: {names.base_url_hint()} must be an http(s) URL, got {base_url!r}."
            )
        check_transport(base_url, names, allow_insecure_http, names.base_url_hint())
        self.base_url = base_url.rstrip("/")
        self.names = names
        self.allow_insecure_http = allow_insecure_http
        # passed with every request: a session's own `verify` loses to REQUESTS_CA_BUNDLE
        self.ca_bundle = checked_ca_bundle(ca_bundle, names)
        self.timeout = timeout
        self.max_retries = max(0, max_retries)
        self.backoff_factor = backoff_factor
        self.max_backoff = max_backoff
        self._secrets = [secret for secret in secrets if secret]
        self._sleep = sleep
        self.session = session or requests.Session()
        self.session.headers.update({"Accept": "application/json", **(headers or {})})
        self.requests_made = 0

    def __repr__(self) -> str:
        """Never show credentials, e.g. in tracebacks that render locals."""
        return f"{type(self).__name__}(base_url={self.base_url!r})"

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def url_for(self, path: str) -> str:
        if path.startswith(("http://", "https://")):  # e.g. a `Link: rel="next"` URL
            check_transport(path, self.names, self.allow_insecure_http, f"the link {safe_url(path)}")
            return path
        return f"{self.base_url}/{path.lstrip('/')}"

    def get(
        self,
        path: str,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        ok_statuses: frozenset[int] = frozenset(),
        decode: Callable[[bytes], Any] | None = None,
    ) -> tuple[requests.Response, Any]:
        """GET with retries; returns the response and its body as ``decode`` returns it.

        Statuses in ``ok_statuses`` (e.g. 304 for a conditional request) return
        ``(response, None)`` without decoding. ``decode`` raises orjson's error for a
        body that is not JSON, which is retried like a transient failure.
        """
        url = self.url_for(path)
        self.begin_request()
        attempt = 0
        while True:
            problem: str
            retry_after: float | None = None
            try:
                self.requests_made += 1
                response = self.session.get(
                    url,
                    params=params,
                    headers=headers,
                    timeout=self.timeout,
                    stream=True,
                    verify=self.ca_bundle,
                )
                content = _read_body(response)
            except (requests.ConnectionError, requests.Timeout) as exc:
                if (refused := _verification_error(exc)) is not None:
                    raise self.certificate_error(url, refused) from None
                problem = type(exc).__name__
                if attempt >= self.max_retries:
                    raise ApiUnreachable(
                        f"{self.names.source} source: could not reach {safe_url(url)} after "
                        f"{attempt + 1} attempt(s) ({problem}); check {self.names.base_url_hint()} "
                        "and network access."
                    ) from None
            else:
                status = response.status_code
                if status in ok_statuses:
                    return response, None
                if 200 <= status < 300:
                    try:
                        # tolerant: one record's bad text must not sink the page (rejects.py)
                        return response, (decode or tolerant_loads)(content)
                    except orjson.JSONDecodeError:
                        # A truncated or garbled body: the next attempt usually succeeds.
                        problem = f"invalid JSON body ({len(content)} bytes)"
                        if attempt >= self.max_retries:
                            raise ApiError(
                                f"{self.names.source} source: GET {safe_url(url)} returned {problem} "
                                f"after {attempt + 1} attempt(s)",
                                status=status,
                            ) from None
                elif status in AUTH_STATUSES and not self.is_rate_limited(response):
                    raise ApiAuthError(
                        f"{self.names.source} source: {safe_url(url)} answered HTTP {status} "
                        f"({self.error_text(response)}); check the credential {self.names.credential_hint()}."
                    )
                elif (pause := self.rate_limit_wait(response)) is not None:
                    # A rate limit is waited out, not counted as a failed attempt.
                    self._sleep(pause)
                    continue
                elif self.should_retry(response) and attempt < self.max_retries:
                    problem = f"HTTP {status}"
                    retry_after = self.retry_after(response)
                else:
                    tried = f" after {attempt + 1} attempts" if attempt else ""
                    raise ApiError(
                        f"{self.names.source} source: GET {safe_url(url)} failed with HTTP {status}{tried}: "
                        f"{self.error_text(response)}",
                        status=status,
                    )
            self._sleep(self.backoff(attempt, retry_after))
            attempt += 1

    def get_json(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        return self.get(path, params)[1]

    def certificate_error(self, url: str, refused: ssl.SSLCertVerificationError) -> InsecureTransport:
        """The server's certificate was refused: name the setting that fixes it."""
        reason = refused.verify_message or str(refused)
        if refused_certificate(reason) == WRONG_HOST:
            fix = f"{self.names.base_url_hint()} must use a host name the certificate holds"
        else:
            fix = (
                f"set {self.names.hint(self.names.ca_bundle_setting)} to the PEM file of the CA "
                "that signed it"
            )
        return InsecureTransport(
            f"{self.names.source} source: the TLS certificate of {safe_url(url)} was refused "
            f"({reason}); {fix}."
        )

    # --- hooks a source may override -------------------------------------------------
    def should_retry(self, response: requests.Response) -> bool:
        return response.status_code in RETRY_STATUSES or self.is_rate_limited(response)

    def is_rate_limited(self, response: requests.Response) -> bool:
        """A 403 can be a rate limit rather than an auth failure (GitHub does this)."""
        return False

    def begin_request(self) -> None:
        """Hook run once per ``get``, before its first attempt (e.g. reset a per-request budget)."""

    def rate_limit_wait(self, response: requests.Response) -> float | None:
        """Seconds to sit out a rate limit without using up a retry, or None (default).

        A source whose API says exactly when its limit resets (GitHub) returns that wait;
        it must bound how long and how often it waits (raise to give up).
        """
        return None

    def retry_after(self, response: requests.Response) -> float | None:
        return parse_retry_after(response.headers.get("Retry-After"))

    def error_text(self, response: requests.Response) -> str:
        """A short, redacted description of an error body."""
        text = response.text[:200] or response.reason or ""
        return redact(text, self._secrets)

    def backoff(self, attempt: int, retry_after: float | None) -> float:
        """Server hint if given, else exponential with jitter (so workers don't retry in step)."""
        if retry_after is not None:
            return min(self.max_backoff, retry_after)
        return min(self.max_backoff, self.backoff_factor * (2**attempt) * random.uniform(0.5, 1.0))
