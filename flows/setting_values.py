"""Typed settings read from the environment; a wrong value fails naming the setting."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

from flows.errors import ConfigError

N = TypeVar("N", int, float)


def float_setting(name: str, default: float) -> float:
    return _number_setting(name, default, float, "a number")


def int_setting(name: str, default: int) -> int:
    return _number_setting(name, default, int, "a whole number")


def _number_setting(name: str, default: N, parse: Callable[[str], N], kind: str) -> N:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return parse(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not {kind}") from None


def bool_setting(name: str, default: bool) -> bool:
    """A true/false setting (1/0, yes/no, on/off too); unset or empty: ``default``."""
    raw = (os.environ.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={raw!r} is not true or false")
