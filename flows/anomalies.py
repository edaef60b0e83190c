"""Anomaly checks after each run, over the load audit, the profile history and the stage timings.

Series (``metric`` names as ``elt_audit.anomalies`` and the alerts show them):

* ``rows_per_load`` and ``hours_since_last_load`` (late is bad, early is fine) per loaded table;
* ``<column>.null_fraction``, ``<column>.distinct_count``, ``<column>.mean`` per profiled
  column, and any other profiled metric a table opts into;
* ``<stage>.seconds`` per flow (dataset ``elt_stages``): a stage slower than its band warns.

Only series that got a point in this run are judged, each by replaying its history through
the detector (flows/anomaly_detector.py), with the acknowledgements of ``elt anomalies ack``.
Settings (dlt config: env, ``.dlt/config.toml``), globally under ``anomalies`` and per table
under ``anomalies.<dataset>.<table>``: ``warn_score``, ``fail_score``, ``relearn_after``,
``metrics`` (more profile metrics to judge), and globally ``fail_run`` (a fail-level anomaly
fails the run; default: it warns and alerts).
"""

from __future__ import annotations

import getpass
import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from itertools import pairwise

import dlt

from flows.anomaly_detector import DetectorSettings, Observation, Verdict, scan
from flows.audit import (
    AnomalyAck,
    AnomalyRecord,
    AuditRead,
    ProfileRecord,
    audit_reader,
    now,
    query_audit,
    record,
    utc,
)
from flows.config import Settings

DEFAULT_METRICS = ("null_fraction", "distinct_count", "mean")
STAGES = "elt_stages"  # the dataset name stage-duration series go under
HISTORY = timedelta(days=180)  # how far back a series is replayed


class AnomaliesFailed(Exception):
    """A fail-level anomaly, with ``anomalies.fail_run`` set: the run fails naming each series."""


@dataclass(frozen=True)
class Series:
    dataset: str
    table: str
    metric: str
    points: list[Observation]
    direction: str = "both"
    # the worst a point can be: stage durations only warn
    worst: str = "fail"

    @property
    def name(self) -> str:
        return f"{self.dataset}.{self.table} {self.metric}"


def detector_settings(dataset: str, table: str, direction: str) -> DetectorSettings:
    """The table's own levels, else the global ones, else the detector's defaults."""
    defaults = DetectorSettings()

    def setting(key: str, default: float) -> float:
        value = dlt.config.get(f"anomalies.{dataset}.{table}.{key}")
        value = value if value is not None else dlt.config.get(f"anomalies.{key}")
        return default if value is None else float(value)

    return replace(
        defaults,
        warn_score=setting("warn_score", defaults.warn_score),
        fail_score=setting("fail_score", defaults.fail_score),
        relearn_after=int(setting("relearn_after", defaults.relearn_after)),
        direction=direction,
    )


def fails_the_run() -> bool:
    value = dlt.config.get("anomalies.fail_run")
    return str(value).strip().lower() in ("1", "true", "yes", "on") if value is not None else False


def judged_metrics(dataset: str, table: str) -> tuple[str, ...]:
    """The profile metrics judged for a table: the defaults and what it opts into."""
    extra = dlt.config.get(f"anomalies.{dataset}.{table}.metrics") or ()
    if isinstance(extra, str):
        extra = json.loads(extra) if extra.strip().startswith("[") else extra.split(",")
    return (*DEFAULT_METRICS, *(str(metric).strip() for metric in extra if str(metric).strip()))


@dataclass(frozen=True)
class RunPoints:
    """What got a new point in this run: loaded and profiled tables (dataset, table), stages."""

    loaded: frozenset[tuple[str, str]]
    profiled: frozenset[tuple[str, str]]
    flow_name: str
    stages: frozenset[str]


def check(
    settings: Settings, run_id: str, new: RunPoints, profiles: Sequence[ProfileRecord]
) -> list[AnomalyRecord]:
    """Judge this run's new points (``profiles``: this run's, not yet written): the verdicts
    for ``elt_audit.anomalies``, flagged ones first."""
    since = now() - HISTORY
    with audit_reader(settings) as read:
        acks = _acknowledgements(read)
        series = _load_series(read, new.loaded, since)
        series += _profile_series(read, new.profiled, since, profiles)
        series += _stage_series(read, new.flow_name, new.stages, since)
    checked_at = now()
    records = []
    for one in series:
        verdicts = scan(
            one.points, detector_settings(one.dataset, one.table, one.direction), acks.get(_key(one), ())
        )
        last = _capped(verdicts[-1], one.worst)
        records.append(
            AnomalyRecord(
                run_id,
                one.dataset,
                one.table,
                one.metric,
                last.value,
                last.expected,
                last.lower,
                last.upper,
                last.score,
                last.level,
                last.at,
                checked_at,
            )
        )
    order = {"fail": 0, "warn": 1}
    return sorted(records, key=lambda r: (order.get(r.level, 2), r.dataset, r.table_name, r.metric))


def acknowledge(
    settings: Settings, dataset: str, table: str, metric: str, note: str | None = None
) -> AnomalyAck:
    """``elt anomalies ack``: accept a series' new level from now on (recorded in the audit)."""
    ack = AnomalyAck(dataset, table, metric, now(), getpass.getuser(), note)
    record(settings, "anomaly_acks", [ack])
    return ack


def _acknowledgements(read: AuditRead) -> dict[tuple[str, str, str], list[datetime]]:
    rows = read("anomaly_acks", "select dataset, table_name, metric, acked_at from {table}")
    acks: dict[tuple[str, str, str], list[datetime]] = defaultdict(list)
    for dataset, table, metric, acked_at in rows:
        acks[(dataset, table, metric)].append(utc(acked_at))
    return acks


def latest_verdicts(settings: Settings) -> list[AnomalyRecord]:
    """Each series' latest verdict (``elt anomalies list``, the metrics)."""
    rows = query_audit(
        settings,
        "anomalies",
        "select t.run_id, t.dataset, t.table_name, t.metric, t.value, t.expected, t.lower, t.upper, t.score,"
        " t.level, t.observed_at, t.checked_at from {table} as t where t.checked_at = ("
        "select max(l.checked_at) from {table} as l"
        " where l.dataset = t.dataset and l.table_name = t.table_name and l.metric = t.metric)"
        " order by t.dataset, t.table_name, t.metric",
    )
    return [AnomalyRecord(*row) for row in rows]


def describe(record: AnomalyRecord) -> str:
    """``raw_shop.orders rows_per_load = 412, expected 1,030 (band 890 .. 1,170), score -7.1``."""
    return (
        f"{record.dataset}.{record.table_name} {record.metric} = {_number(record.value)}, expected "
        f"{_number(record.expected)} (band {_number(record.lower)} .. {_number(record.upper)}), "
        f"score {record.score:+.1f}"
    )


def _load_series(read: AuditRead, tables: frozenset[tuple[str, str]], since: datetime) -> list[Series]:
    if not tables:
        return []
    rows = read(
        "loads",
        "select dataset, table_name, sum(rows), max(finished_at) from {table}"
        f" where outcome = 'loaded' and table_name is not null and finished_at >= '{since.isoformat()}'"
        " group by run_id, dataset, table_name order by 4",
    )
    points: dict[tuple[str, str], list[Observation]] = defaultdict(list)
    for dataset, table, rows_loaded, finished in rows:
        if (dataset, table) in tables:
            points[(dataset, table)].append(Observation(utc(finished), float(rows_loaded)))
    series = []
    for (dataset, table), observed in points.items():
        series.append(Series(dataset, table, "rows_per_load", observed))
        gaps = [
            Observation(later.at, (later.at - earlier.at).total_seconds() / 3600)
            for earlier, later in pairwise(observed)
        ]
        if gaps:
            series.append(Series(dataset, table, "hours_since_last_load", gaps, direction="up"))
    return series


def _profile_series(
    read: AuditRead, tables: frozenset[tuple[str, str]], since: datetime, fresh: Sequence[ProfileRecord]
) -> list[Series]:
    if not tables:
        return []
    wanted = {table: judged_metrics(*table) for table in tables}
    metrics = sorted({metric for judged in wanted.values() for metric in judged})
    listed = ", ".join(f"'{metric}'" for metric in metrics)
    rows = read(
        "profiles",
        "select dataset, table_name, column_name, metric, value, profiled_at from {table}"
        f" where value is not null and column_name is not null and metric in ({listed})"
        f" and profiled_at >= '{since.isoformat()}' order by profiled_at",
    )
    rows += [
        (r.dataset, r.table_name, r.column_name, r.metric, r.value, r.profiled_at)
        for r in fresh
        if r.value is not None and r.column_name is not None
    ]
    points: dict[tuple[str, str, str], list[Observation]] = defaultdict(list)
    for dataset, table, column, metric, value, profiled_at in rows:
        if metric in wanted.get((dataset, table), ()):
            points[(dataset, table, f"{column}.{metric}")].append(Observation(utc(profiled_at), float(value)))
    return [Series(dataset, table, metric, observed) for (dataset, table, metric), observed in points.items()]


def _stage_series(read: AuditRead, flow_name: str, stages: frozenset[str], since: datetime) -> list[Series]:
    if not stages:
        return []
    rows = read(
        "stages",
        "select stage, seconds, finished_at from {table}"
        f" where flow_name = '{flow_name}' and status = 'ok' and finished_at >= '{since.isoformat()}'"
        " order by finished_at",
    )
    points: dict[str, list[Observation]] = defaultdict(list)
    for stage, seconds, finished in rows:
        if stage in stages:
            points[stage].append(Observation(utc(finished), float(seconds)))
    return [
        Series(STAGES, flow_name, f"{stage}.seconds", observed, direction="up", worst="warn")
        for stage, observed in points.items()
    ]


def _capped(verdict: Verdict, worst: str) -> Verdict:
    return replace(verdict, level="warn") if worst == "warn" and verdict.level == "fail" else verdict


def _key(series: Series) -> tuple[str, str, str]:
    return (series.dataset, series.table, series.metric)


def _number(value: float | None) -> str:
    if value is None:
        return "?"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
