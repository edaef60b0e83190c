"""The record a source registers itself with: what ingest, deployments, freshness and status read.

Why a record: a source's name used to be listed in five places (the ingest flow's three
tables, the Prefect deployments, the freshness SLAs), and a new source missing from one of
them failed late or silently. Each Python source package exports one ``SourceSpec``; each
declarative YAML file (REST API, SQL database) yields one; ``dlt_sources/registry.py``
gathers them. Pure data and dlt: never imports Prefect.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

import dlt

from dlt_sources.common.lineage import Origin
from dlt_sources.common.privacy import SourcePrivacy
from dlt_sources.errors import SourceError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_CRON_FIELDS = 5


def parse_duration(text: str) -> timedelta:
    """``30m``, ``6h``, ``2d`` as a timedelta; ValueError for anything else."""
    match = _DURATION.match(str(text))
    if not match:
        raise ValueError(f"{text!r} is not a duration such as 30m, 6h or 2d")
    return timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})


class AfterLoadReport(Protocol):
    """What an after-load hook tells the run report: lines to note and lines to warn about."""

    notes: Sequence[str]
    warnings: Sequence[str]
    # replication slot → WAL bytes it retains (CDC sources; the metrics' slot lag)
    slot_lag_bytes: Mapping[str, int]


@dataclass(frozen=True)
class FreshnessSla:
    """How long ago a source may have last loaded successfully before the on-call is alerted.

    ``default`` covers every table without an SLA of its own in ``tables``.
    """

    default: timedelta | None = None
    tables: Mapping[str, timedelta] = field(default_factory=dict)


@dataclass(frozen=True)
class SourceSpec:
    """One source, registered once.

    ``name`` is also the dataset suffix (``raw_<name>``), the staging folder in
    ``transform/models/staging/`` and the contracts folder ``checks/raw/<name>/``.
    ``schedule`` is the cron (UTC) of the source's own deployment; None: the source loads
    only in the full nightly run. ``after_load`` runs once the load is committed (CDC applies
    TRUNCATEs and reports slot lag there). ``origin`` says where the data comes from.
    """

    name: str
    factory: Callable[[], Any]
    tables: tuple[str, ...]
    cdc_tables: tuple[str, ...] = ()
    after_load: Callable[[dlt.Pipeline], AfterLoadReport] | None = None
    schedule: str | None = None
    freshness: FreshnessSla | None = None
    # where the data comes from, in words, for the documentation (``elt docs``)
    origin: str = ""
    # the same as lineage datasets (endpoint or source table per raw table); resolving it
    # reads the source's settings, never a secret, and contacts nothing
    lineage: Callable[[], Origin] | None = None
    # per table: which columns hold personal data or identify a person, and what erasing
    # one does to it (dlt_sources/common/privacy.py); tables holding no person are left out
    privacy: SourcePrivacy = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.schedule is not None and len(self.schedule.split()) != _CRON_FIELDS:
            raise SourceError(f"source {self.name}: schedule {self.schedule!r} is not a five-field cron")
        for kind, named in (
            ("CDC tables", self.cdc_tables),
            ("privacy tables", tuple(self.privacy)),
            ("freshness SLA tables", tuple(self.freshness.tables) if self.freshness else ()),
        ):
            unknown = sorted(set(named) - set(self.tables))
            if unknown:
                raise SourceError(
                    f"source {self.name}: {kind} {', '.join(unknown)} are not among its tables "
                    f"({', '.join(self.tables)})"
                )
