"""Where lineage events go, by one setting, and sending them off the run's critical path.

``ELT_LINEAGE_TRANSPORT``: ``file`` (default: one JSON event per line in
``ELT_LINEAGE_FILE``, default ``<data dir>/lineage/events.jsonl``), ``http`` (any
OpenLineage endpoint: Marquez, DataHub, OpenMetadata; ``ELT_LINEAGE_URL``, optional
``ELT_LINEAGE_ENDPOINT``, and the API key from the secrets, ``lineage.api_key``:
``LINEAGE__API_KEY``, ``.dlt/secrets.toml`` or a Prefect Secret block), both
(``file,http``: a local copy of what the endpoint got) or ``none``.
The client's own transports do the writing; a background thread does the waiting, so a
slow or unreachable endpoint costs the run nothing but a warning.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flows.config import data_dir
from flows.errors import ConfigError
from flows.redact import first_line
from flows.setting_values import float_setting

logger = logging.getLogger(__name__)

TRANSPORTS = ("file", "http", "none")


@dataclass(frozen=True)
class LineageSettings:
    transports: tuple[str, ...]
    file: Path
    url: str | None = None
    endpoint: str = "api/v1/lineage"
    api_key: str | None = None
    timeout_s: float = 5.0

    def __repr__(self) -> str:  # the API key stays out of logs and tracebacks
        return f"LineageSettings(transports={self.transports!r}, file={str(self.file)!r}, url={self.url!r})"


def lineage_settings() -> LineageSettings:
    """The transport and its target from the environment; the API key from the secrets."""
    setting = (os.environ.get("ELT_LINEAGE_TRANSPORT") or "file").strip().lower()
    transports = tuple(dict.fromkeys(part.strip() for part in setting.split(",") if part.strip() != "none"))
    unknown = [part for part in transports if part not in TRANSPORTS]
    if unknown:
        raise ConfigError(f"ELT_LINEAGE_TRANSPORT={setting!r}: choose file, http, file,http or none")
    file = Path(os.environ.get("ELT_LINEAGE_FILE") or data_dir() / "lineage" / "events.jsonl")
    url = os.environ.get("ELT_LINEAGE_URL") or None
    if "http" in transports and not url:
        raise ConfigError(
            "ELT_LINEAGE_TRANSPORT=http needs ELT_LINEAGE_URL (the OpenLineage endpoint's base URL)"
        )
    api_key = None
    if "http" in transports:
        import dlt

        api_key = dlt.secrets.get("lineage.api_key") or None
    return LineageSettings(
        transports=transports,
        file=file,
        url=url,
        endpoint=os.environ.get("ELT_LINEAGE_ENDPOINT") or "api/v1/lineage",
        api_key=api_key,
        timeout_s=float_setting("ELT_LINEAGE_TIMEOUT_SECONDS", 5.0),
    )


def make_transports(settings: LineageSettings) -> list[Any]:
    """The OpenLineage client's transports for ``settings`` (none for ``none``)."""
    return [_transport(kind, settings) for kind in settings.transports]


def _transport(kind: str, settings: LineageSettings) -> Any:
    if kind == "file":
        from openlineage.client.transport.file import FileConfig, FileTransport

        settings.file.parent.mkdir(parents=True, exist_ok=True)
        return FileTransport(FileConfig(log_file_path=str(settings.file), append=True))
    from openlineage.client.transport.http import HttpConfig, HttpTransport

    auth = {"type": "api_key", "apiKey": settings.api_key} if settings.api_key else {}
    config = HttpConfig.from_dict(
        {"url": settings.url, "endpoint": settings.endpoint, "timeout": settings.timeout_s, "auth": auth}
    )
    return HttpTransport(config)


class Emitter:
    """Runs lineage work (building and sending events) on one background thread, in order.

    ``submit`` never blocks the run; ``close`` waits for what is queued, up to a limit, and
    reports what failed. The work itself may fail (an endpoint down, a SQL sqlglot cannot
    read): each failure becomes one warning, never the run's failure.
    """

    def __init__(self, transports: list[Any]) -> None:
        self._transports = transports
        self._work: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self.failures: list[str] = []
        self.sent = 0
        self._thread = threading.Thread(target=self._run, name="lineage", daemon=True)
        self._thread.start()

    @property
    def sends(self) -> bool:
        """False with ``ELT_LINEAGE_TRANSPORT=none``: events need not even be built."""
        return bool(self._transports)

    def submit(self, work: Callable[[], None]) -> None:
        self._work.put(work)

    def send(self, events: list[Any]) -> None:
        """Send events now (from the background thread: call inside submitted work)."""
        for event in events:
            for transport in self._transports:
                transport.emit(event)
            self.sent += 1

    def close(self, timeout_s: float = 120.0) -> list[str]:
        """Wait for the queued work, up to ``timeout_s``; the failures, one line each."""
        self._work.put(None)
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            self.failures.append(f"lineage: still sending after {timeout_s:.0f}s; the rest is dropped")
        for transport in self._transports:
            close = getattr(transport, "close", None)
            if callable(close):
                close()
        return self.failures

    def _run(self) -> None:
        while (work := self._work.get()) is not None:
            try:
                work()
            except Exception as exc:  # lineage must never fail the run it describes
                message = f"lineage: {type(exc).__name__}: {first_line(exc)}"
                logger.warning(message)
                self.failures.append(message)
