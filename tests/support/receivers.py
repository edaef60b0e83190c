"""Local stand-ins for the alert channels: an HTTP receiver (Slack-compatible and generic
webhooks) and an SMTP server (aiosmtpd), both on 127.0.0.1, keeping what they received."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.policy import default as default_policy
from typing import Any

from aiosmtpd.controller import Controller

from standins.loopback import LoopbackServer, QuietHandler, serving


@dataclass
class Received:
    """Every message a channel got: (path or recipient, subject, text)."""

    messages: list[tuple[str, str, str]] = field(default_factory=list)

    def on(self, where: str) -> list[tuple[str, str]]:
        return [(subject, text) for place, subject, text in self.messages if place == where]


class _Capture(QuietHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        payload: Any = json.loads(body or b"{}")
        subject = payload.get("subject", "")
        text = payload.get("text") or payload.get("body", "")
        self.server.received.messages.append((self.path.split("?")[0], subject, text))  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


class _SmtpHandler:
    def __init__(self, received: Received) -> None:
        self.received = received

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content, policy=default_policy)
        text = message.get_body(preferencelist=("plain",))
        content = text.get_content() if text is not None else ""
        for recipient in envelope.rcpt_tos:
            self.received.messages.append((recipient, str(message["Subject"]), content))
        return "250 OK"


@contextmanager
def webhook_receiver() -> Iterator[tuple[str, Received]]:
    """An HTTP server taking JSON POSTs on any path; yields its base URL and what it got."""
    received = Received()
    server = LoopbackServer(_Capture, received=received)
    with serving(server):
        yield server.base_url, received


@contextmanager
def smtp_receiver() -> Iterator[tuple[int, Received]]:
    """An SMTP server on 127.0.0.1; yields its port and what it got."""
    received = Received()
    with socket.socket() as probe:  # aiosmtpd can't bind port 0 and report it back
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(_SmtpHandler(received), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, received
    finally:
        controller.stop()


@dataclass(frozen=True)
class Request:
    """One HTTP request as it arrived: path, headers and raw body."""

    path: str
    headers: dict[str, str]
    body: bytes


class _Record(QuietHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.requests.append(Request(self.path, dict(self.headers.items()), body))  # type: ignore[attr-defined]
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()


@contextmanager
def http_recorder() -> Iterator[tuple[str, list[Request]]]:
    """An HTTP endpoint on 127.0.0.1 (an OpenLineage backend's stand-in) keeping every POST whole."""
    requests: list[Request] = []
    server = LoopbackServer(_Record, requests=requests)
    with serving(server):
        yield server.base_url, requests
