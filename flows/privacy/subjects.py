"""A person named by an identifier (``email:alice@example.com``), and everyone they are linked to.

The kinds of identifier are those the sources declare (``x-subject`` hints): an email, a
shop customer id, a Stripe customer id. A person usually has several: forgetting
``email:alice@example.com`` must also forget shop customer 123 whose email it is, and the
Stripe customer whose ``metadata.shop_customer_id`` is 123. :func:`linked_identifiers`
follows those links through the raw tables and the snapshots until no new one turns up.

A subject's values never go into a log, an error or a Prefect parameter: ``repr`` hides them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from dlt_sources.common.privacy import keyed_hash, normalise
from dlt_sources.registry import SOURCES
from flows.errors import ConfigError
from flows.privacy.places import RAW, SNAPSHOT, Place

# links are followed this many rounds at most (a chain customer → email → Stripe customer is 2)
_MAX_ROUNDS = 5


def known_kinds() -> list[str]:
    """Every kind of identifier some source declares."""
    kinds = {
        column.kind
        for spec in SOURCES.values()
        for table in spec.privacy.values()
        for column in table.subjects
    }
    return sorted(kinds)


@dataclass(frozen=True)
class Subject:
    """``kind:value``, the value normalised (an email lower-cased)."""

    kind: str
    value: str = field(repr=False)

    @classmethod
    def parse(cls, text: str) -> Subject:
        kind, sep, value = text.partition(":")
        kinds = known_kinds()
        if not sep or not value.strip():
            raise ConfigError(
                f"--subject must be KIND:VALUE with KIND one of {', '.join(kinds)}"
                " (e.g. email:alice@example.com)"
            )
        if kind not in kinds:
            raise ConfigError(f"unknown subject kind {kind!r} (--subject); the kinds are {', '.join(kinds)}")
        return cls(kind, normalise(kind, value))

    def hashed(self, key: bytes) -> str:
        return keyed_hash(key, self.kind, self.value)


Identifiers = dict[str, set[str]]
"""kind → normalised values: a person's identifiers."""

# runs one query with parameters and returns its rows
RunSql = Callable[[str, list[Any]], list[tuple[Any, ...]]]


class Finds(Protocol):
    """How a person's rows are found in a place (flows/privacy/matching.py)."""

    def table(self, place: Place) -> str: ...

    def where(self, place: Place, found: Identifiers) -> tuple[str, list[Any]]: ...

    def identifier_columns(self, place: Place) -> list[tuple[str, str]]: ...


def linked_identifiers(
    subject: Subject, places: Iterable[Place], run_sql: RunSql, finds: Finds
) -> Identifiers:
    """The subject's identifiers and every one linked to them in a source table or snapshot."""
    found: Identifiers = {subject.kind: {subject.value}}
    linking = [
        place
        for place in places
        if place.kind in (RAW, SNAPSHOT) and len({s.kind for s in place.subjects()}) > 1
    ]
    for _ in range(_MAX_ROUNDS):
        before = _count(found)
        for place in linking:
            where, parameters = finds.where(place, found)
            if not where:
                continue
            columns = finds.identifier_columns(place)
            selected = ", ".join(sql for _, sql in columns)
            rows = run_sql(f"select distinct {selected} from {finds.table(place)} where {where}", parameters)
            for row in rows:
                for (kind, _), value in zip(columns, row, strict=True):
                    if value is not None and str(value).strip():
                        found.setdefault(kind, set()).add(normalise(kind, value))
        if _count(found) == before:
            break
    return found


def _count(found: Mapping[str, set[str]]) -> int:
    return sum(len(values) for values in found.values())


def describe(found: Identifiers) -> str:
    """``3 identifiers (1 email, 1 shop_customer, 1 stripe_customer)``: counts only, never values."""
    parts = ", ".join(f"{len(values)} {kind}" for kind, values in sorted(found.items()))
    return f"{_count(found)} identifiers ({parts})"
