"""Keep secret values out of every text a person or a tool may read later.

Why a value list and not patterns: a leaked API key looks like any other string. The
values of environment variables whose names say they hold a secret are known before
anything runs; every report, alert and error message passes through ``redact``.
"""

from __future__ import annotations

import os
import re

# Names of settings whose values must never reach a log line, an alert or an error message
# (every alerts.* setting: webhook and SMTP URLs carry their tokens and passwords; the PII
# hashing salt, TRANSFORM__PII_SALT; connection strings such as ELT_CDC_ADMIN_DSN).
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|KEY|CREDENTIAL|PRIVATE|SALT|DSN|^ALERTS__", re.IGNORECASE)
# Shorter values (a port, "true") would blank out ordinary words.
_MIN_SECRET_LENGTH = 6


def secret_values(names: list[str] | None = None) -> list[str]:
    """Values of secret-looking environment variables (of ``names``, default all), longest first."""
    candidates = os.environ if names is None else {name: os.environ.get(name, "") for name in names}
    values = {
        value
        for name, value in candidates.items()
        if SECRET_NAME.search(name) and len(value) >= _MIN_SECRET_LENGTH
    }
    return sorted(values, key=len, reverse=True)


def redact(text: str, secrets: list[str] | None = None) -> str:
    """``text`` with every secret value replaced by ``***``."""
    for secret in secret_values() if secrets is None else secrets:
        text = text.replace(secret, "***")
    return text


def first_line(error: BaseException | str | None, secrets: list[str] | None = None) -> str:
    """The first non-empty line of an error, secrets removed: what fits in a message."""
    text = str(error or "").strip()
    line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if not line and isinstance(error, BaseException):
        line = type(error).__name__
    return redact(line, secrets)[:500]
