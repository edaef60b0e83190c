"""Freshness SLAs: alert when a source has not loaded successfully for longer than allowed.

The SLAs are part of each source's registry record (``dlt_sources/registry.py``: a
``default`` for the source, optionally one per table); ``ELT_FRESHNESS_FILE`` names a YAML
file of SLAs that replaces them all, for a deployment that wants its own. The last
successful load of each source comes from the audit table in the warehouse
(``elt_audit.loads``, flows/audit.py), so the check needs no local state. A breach is one
incident per table (flows/alerts.py): one alert when it starts, quiet while it lasts, one
resolved message once a good load brings the table back inside its SLA.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import yaml
from prefect import flow, get_run_logger

from dlt_sources import spec
from dlt_sources.common.declared import read_freshness
from dlt_sources.registry import SOURCES
from flows.alerts import Incident, alert_failed_run, open_incident, resolve_incident
from flows.audit import last_successful_loads, now
from flows.config import ConfigError, Settings, load_settings

FILE_SETTING = "ELT_FRESHNESS_FILE"


@dataclass(frozen=True)
class Freshness:
    """One table against its SLA; ``last_load`` is None when the source never loaded."""

    source: str
    dataset: str
    table: str
    sla: timedelta
    last_load: datetime | None
    checked_at: datetime

    @property
    def age(self) -> timedelta | None:
        return None if self.last_load is None else self.checked_at - self.last_load

    @property
    def breached(self) -> bool:
        return self.age is None or self.age > self.sla

    def describe(self) -> str:
        loaded = f"last loaded {self.last_load:%Y-%m-%d %H:%M:%S} UTC" if self.last_load else "never loaded"
        return f"{self.dataset}.{self.table}: {loaded}, SLA {_human(self.sla)}"


def parse_duration(text: str, setting: str) -> timedelta:
    try:
        return spec.parse_duration(text)
    except ValueError:
        raise ConfigError(f"{setting}={text!r} is not a duration such as 30m, 6h or 2d") from None


def freshness_slas() -> dict[tuple[str, str], timedelta]:
    """``(source, table) -> SLA``; ``"*"`` stands for the tables without their own SLA."""
    override = os.environ.get(FILE_SETTING)
    if override:
        path = Path(override)
        document = yaml.safe_load(path.read_text()) or {}
        slas = {
            source: read_freshness(sla, f"{path}: {source}", ConfigError) for source, sla in document.items()
        }
    else:
        slas = {name: source.freshness for name, source in SOURCES.items() if source.freshness}
    by_table = {}
    for source, sla in slas.items():
        if sla.default is not None:
            by_table[(source, "*")] = sla.default
        by_table |= {(source, table): table_sla for table, table_sla in sla.tables.items()}
    return by_table


def check_freshness(settings: Settings) -> list[Freshness]:
    """Every SLA against the audit table; no alerting here (see the ``freshness`` flow)."""
    last = last_successful_loads(settings)
    checked_at = now()
    return [
        Freshness(source, settings.dataset(f"raw_{source}"), table, sla, last.get(source), checked_at)
        for (source, table), sla in sorted(freshness_slas().items())
    ]


@flow(name="freshness", on_failure=[alert_failed_run], on_crashed=[alert_failed_run])
def freshness(warehouse: str | None = None) -> list[Freshness]:
    """Alert once per breached table; send the resolved message once it is fresh again."""
    log = get_run_logger()
    results = check_freshness(load_settings(warehouse))
    for result in results:
        key = f"freshness {result.dataset}.{result.table}"
        if result.breached:
            log.warning("freshness SLA breached: %s", result.describe())
            open_incident(
                Incident(
                    key=key,
                    cause="stale",
                    subject=f"ELT freshness SLA breached: {result.dataset}.{result.table}",
                    details=(result.describe(), "the loads of this source are failing or not running"),
                )
            )
        elif resolve_incident(key, f"{result.describe()}: within its SLA again"):
            log.info("freshness restored: %s", result.describe())
    return results


def _human(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
