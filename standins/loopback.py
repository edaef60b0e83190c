"""Plumbing shared by the HTTP stand-ins: a quiet keep-alive handler and a server on
127.0.0.1 (free port) run in a daemon thread for the length of a ``with`` block, speaking
HTTPS when given a server-side TLS context (tests of the sources' certificate checks)."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class QuietHandler(BaseHTTPRequestHandler):
    """Keep-alive (clients reuse one connection for all pages), no per-request log lines."""

    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; without TCP_NODELAY, Nagle plus delayed
    # ACK add ~40 ms to every keep-alive response.
    disable_nagle_algorithm = True
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: a large run makes thousands of requests."""


class LoopbackServer(ThreadingHTTPServer):
    """Binds 127.0.0.1 on a free port; ``state`` becomes attributes the handlers read.

    With ``tls`` every accepted connection is wrapped in that server-side context (HTTPS).
    """

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, handler: type[BaseHTTPRequestHandler], tls: ssl.SSLContext | None = None, **state: Any
    ) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        if tls is not None:
            self.socket = tls.wrap_socket(self.socket, server_side=True)
        self.scheme = "https" if tls else "http"
        for name, value in state.items():
            setattr(self, name, value)

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"{self.scheme}://{host}:{port}"


@contextmanager
def serving(server: ThreadingHTTPServer) -> Iterator[None]:
    """Serve in a daemon thread; shut down and close the socket when the block exits."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
