"""A person named by an identifier (``email:alice@example.com``), and everyone they are linked to.

The kinds of identifier are those the sources declare (``x-subject`` hints): an email, a
shop customer id, a Stripe customer id. A person usually has several: forgetting
``email:alice@example.com`` must also forget shop customer 123 whose email it is, and the
Stripe customer whose ``metadata.shop_customer_id`` is 123. :func:`linked_identifiers`
follows those links through the raw tables and the snapshots until no new one turns up.

A subject's values never go into a log, an error or a Prefect parameter: ``repr`` hides them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
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


def links(place: Place) -> bool:
    """Whether a place ties a person's identifiers together (a source's customer table, the
    snapshot): where the other identifiers of someone are found."""
    return place.kind in (RAW, SNAPSHOT) and len({s.kind for s in place.subjects()}) > 1


def linked_identifiers(
    start: Identifiers, places: Iterable[Place], run_sql: RunSql, finds: Finds
) -> Identifiers:
    """``start`` and every identifier linked to them in a source table or snapshot."""
    found: Identifiers = {kind: set(values) for kind, values in start.items()}
    linking = [place for place in places if links(place)]
    for _ in range(_MAX_ROUNDS):
        before = _count(found)
        for place in linking:
            where, parameters = finds.where(place, found)
            if not where:
                continue
            for kind, value in _identifiers_in(place, finds, run_sql, where, parameters):
                found.setdefault(kind, set()).add(value)
        if _count(found) == before:
            break
    return found


def identifiers_hashed_as(
    hashes: frozenset[str], key: bytes, places: Iterable[Place], run_sql: RunSql, finds: Finds
) -> Identifiers:
    """The identifiers, still held in a linking place, whose keyed hash is one of ``hashes``.

    How an interrupted erasure is resumed: its tombstones were written first, and the places
    that link identifiers are erased last, so what is left of the person is found from there.
    """
    found: Identifiers = {}
    for place in (place for place in places if links(place)):
        for kind, value in _identifiers_in(place, finds, run_sql, "", []):
            if keyed_hash(key, kind, value) in hashes:
                found.setdefault(kind, set()).add(value)
    return found


def _identifiers_in(
    place: Place, finds: Finds, run_sql: RunSql, where: str, parameters: list[Any]
) -> Iterator[tuple[str, str]]:
    """(kind, normalised value) of every identifier in ``place``'s rows matching ``where``."""
    columns = finds.identifier_columns(place)
    selected = ", ".join(sql for _, sql in columns)
    condition = f" where {where}" if where else ""
    for row in run_sql(f"select distinct {selected} from {finds.table(place)}{condition}", parameters):
        for (kind, _), value in zip(columns, row, strict=True):
            if value is not None and str(value).strip():
                yield kind, normalise(kind, value)


def _count(found: Mapping[str, set[str]]) -> int:
    return sum(len(values) for values in found.values())


def describe(found: Identifiers) -> str:
    """``3 identifiers (1 email, 1 shop_customer, 1 stripe_customer)``: counts only, never values."""
    parts = ", ".join(f"{len(values)} {kind}" for kind, values in sorted(found.items()))
    return f"{_count(found)} identifiers ({parts})"
