"""Errors every stage shares, in a module that imports nothing of the platform's own, so the
resolver (``flows/config.py``) and the warehouse plug-ins can both raise them."""

from __future__ import annotations


class ConfigError(Exception):
    """A setting is missing or wrong; the message names the setting, never a secret."""


def cause_chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and its causes; dlt keeps the wrapped error in ``.exception``."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        current = getattr(current, "exception", None) or current.__cause__ or current.__context__
    return chain
