"""Prometheus metrics of the platform, read from the audit tables at scrape time (``elt metrics serve``).

Why pull, read from the warehouse, and not a push to a Pushgateway at the end of each run:
the audit tables (flows/audit.py) are the truth whatever worker ran a run, and a freshness
lag keeps growing between runs, so a value pushed when a run ended would freeze it.

Why only the latest row of each series: a label set per run would grow for ever; one per
flow, stage, table, slot and anomaly series keeps the cardinality bounded by the project,
not by its history. Prometheus keeps the history.

It never writes to the warehouse and a scrape never fails: one connection per scrape at
most (a read is cached for ``CACHE_SECONDS``, so Prometheus' scrape and a person's curl
share it), and when the warehouse cannot be read (DuckDB's file held by a running load, a
cloud warehouse down) it serves the last good values with ``elt_metrics_up 0`` and logs
why. The metric names are declared once, in ``METRICS``; the Grafana dashboard
(deployments/grafana/elt-dashboard.json) queries exactly these (tests/unit).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from dlt.destinations.exceptions import DatabaseUndefinedRelation
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from flows.audit import DATASET, LOADED, now, utc
from flows.config import ConfigError, Settings
from flows.freshness import freshness_slas
from flows.pipelines import warehouse_pipeline
from flows.redact import first_line

logger = logging.getLogger(__name__)

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 9464
# Prometheus scrapes every 15 s or more; a person's curl right after it reuses its read
CACHE_SECONDS = 5.0
# 0 for ok and learning (no verdict yet), 1 warn, 2 fail: the dashboard colours by it
ANOMALY_LEVELS = {"learning": 0, "ok": 0, "warn": 1, "fail": 2}


@dataclass(frozen=True)
class MetricSpec:
    name: str  # as Prometheus stores it: a counter's ends in _total, nothing else's does
    labels: tuple[str, ...]
    help: str

    @property
    def is_counter(self) -> bool:
        return self.name.endswith("_total")


_FLOW, _STAGE, _TABLE = ("flow",), ("flow", "stage"), ("table",)
_LOAD, _SLOT, _SERIES = ("source", "dataset", "table"), ("source", "slot"), ("dataset", "table", "metric")
METRICS = (
    MetricSpec("elt_run_duration_seconds", _FLOW, "Sum of the stage durations of the flow's last run."),
    MetricSpec("elt_run_finished_timestamp_seconds", _FLOW, "When the flow's last run ended."),
    MetricSpec("elt_stage_duration_seconds", _STAGE, "How long the stage took in the flow's last run."),
    MetricSpec("elt_stage_failed", _STAGE, "1 if the stage failed in the flow's last run, else 0."),
    MetricSpec("elt_last_load_rows", _LOAD, "Rows of the table's last successful load."),
    MetricSpec("elt_rows_loaded_total", _LOAD, "Rows loaded into the table by all its successful loads."),
    MetricSpec("elt_last_load_timestamp_seconds", _LOAD, "When the table's last successful load ended."),
    MetricSpec("elt_freshness_lag_seconds", _LOAD, "Seconds since the table's last successful load."),
    MetricSpec("elt_freshness_sla_seconds", _LOAD, "The table's freshness SLA, where one is set."),
    MetricSpec("elt_contract_passed", _TABLE, "1 if the table's latest contract check passed, else 0."),
    MetricSpec("elt_contract_checked_timestamp_seconds", _TABLE, "When the latest contract check ran."),
    MetricSpec("elt_cdc_slot_lag_bytes", _SLOT, "WAL the CDC slot retained after its last load."),
    MetricSpec("elt_anomaly_score", _SERIES, "The series' latest anomaly score (none while learning)."),
    MetricSpec("elt_anomaly_level", _SERIES, "The series' latest level: 0 ok or learning, 1 warn, 2 fail."),
    MetricSpec("elt_metrics_up", (), "1 if the last read of the audit tables succeeded, else 0."),
    MetricSpec("elt_metrics_read_timestamp_seconds", (), "When the values served were read."),
)


class StageRow(NamedTuple):
    flow: str
    stage: str
    seconds: float
    status: str
    finished_at: datetime


class LoadRow(NamedTuple):
    source: str
    dataset: str
    table: str
    rows: int
    total_rows: int
    finished_at: datetime


class ContractRow(NamedTuple):
    table: str
    passed: bool
    checked_at: datetime


class SlotRow(NamedTuple):
    source: str
    slot: str
    retained_bytes: int
    checked_at: datetime


class AnomalyRow(NamedTuple):
    dataset: str
    table: str
    metric: str
    score: float | None
    level: str


@dataclass(frozen=True)
class AuditSnapshot:
    """What one read of the audit tables found: the latest row of every series, no history."""

    stages: list[StageRow] = field(default_factory=list)  # every stage of each flow's last run
    loads: list[LoadRow] = field(default_factory=list)
    contracts: list[ContractRow] = field(default_factory=list)
    slots: list[SlotRow] = field(default_factory=list)
    anomalies: list[AnomalyRow] = field(default_factory=list)
    slas: dict[tuple[str, str], timedelta] = field(default_factory=dict)  # flows/freshness.py
    read_at: datetime | None = None


def _latest(columns: str, alias: str, partition: str, order: str) -> str:
    """The newest row of each ``partition`` (window functions: the same SQL on every warehouse).
    Columns are always qualified: ``rows`` is a reserved word on BigQuery."""
    return (
        f"select {', '.join(f'r.{name}' for name in columns.split())} from (select {alias}.*,"
        f" row_number() over (partition by {partition} order by {order} desc) as recency"
        f" from {{table}} as {alias}) as r where r.recency = 1"
    )


_LOADED = f"where l.outcome = '{LOADED}' and l.table_name is not null"
_LOAD_KEY = "l.source, l.dataset, l.table_name"
QUERIES = {
    # rank, not row_number: every stage of the last run shares its finished_at (flows/audit.py)
    "stages": "select r.flow_name, r.stage, r.seconds, r.status, r.finished_at from (select s.*,"
    " rank() over (partition by s.flow_name order by s.finished_at desc) as recency"
    " from {table} as s) as r where r.recency = 1",
    "loads": f"select r.source, r.dataset, r.table_name, r.rows, r.total_rows, r.finished_at from ("
    f"select l.*, sum(l.rows) over (partition by {_LOAD_KEY}) as total_rows,"
    f" row_number() over (partition by {_LOAD_KEY} order by l.finished_at desc) as recency"
    f" from {{table}} as l {_LOADED}) as r where r.recency = 1",
    "contracts": _latest("table_name passed checked_at", "c", "c.table_name", "c.checked_at"),
    "cdc_slots": _latest(
        "source slot_name retained_bytes checked_at", "c", "c.source, c.slot_name", "c.checked_at"
    ),
    "anomalies": _latest(
        "dataset table_name metric score level", "a", "a.dataset, a.table_name, a.metric", "a.checked_at"
    ),
}


def read_audit(settings: Settings) -> AuditSnapshot:
    """Every series' latest row, through one connection; a table not made yet reads as empty.

    A pipeline of its own (``elt_metrics``): it only reads, and never shares a local
    working folder with a run writing the audit tables.
    """
    slas = freshness_slas()
    pipeline = warehouse_pipeline(settings, "elt_metrics", DATASET)
    found: dict[str, list[tuple[Any, ...]]] = {}
    with pipeline.sql_client() as client:
        for table, sql in QUERIES.items():
            try:
                rows = client.execute_sql(sql.format(table=client.make_qualified_table_name(table)))
            except DatabaseUndefinedRelation:
                rows = []
            found[table] = [tuple(row) for row in rows or []]
    return AuditSnapshot(
        stages=[StageRow(f, s, float(sec), st, utc(at)) for f, s, sec, st, at in found["stages"]],
        loads=[LoadRow(so, d, t, int(n), int(tot), utc(at)) for so, d, t, n, tot, at in found["loads"]],
        contracts=[ContractRow(t, bool(p), utc(at)) for t, p, at in found["contracts"]],
        slots=[SlotRow(so, sl, int(b), utc(at)) for so, sl, b, at in found["cdc_slots"]],
        anomalies=[
            AnomalyRow(d, t, m, None if s is None else float(s), lv) for d, t, m, s, lv in found["anomalies"]
        ],
        slas=slas,
        read_at=now(),
    )


def families(snapshot: AuditSnapshot, up: bool, at: datetime) -> list[Metric]:
    """The metric families of ``snapshot``, freshness lags computed at ``at`` (so they keep
    growing while the warehouse cannot be read); every family of ``METRICS``, in its order."""
    built = {
        spec.name: (CounterMetricFamily if spec.is_counter else GaugeMetricFamily)(
            spec.name, spec.help, labels=spec.labels
        )
        for spec in METRICS
    }

    def add(name: str, labels: Iterable[str], value: float) -> None:
        built[name].add_metric(list(labels), value)

    runs: dict[str, tuple[float, datetime]] = {}
    for row in {(row.flow, row.stage): row for row in snapshot.stages}.values():
        seconds, finished = runs.get(row.flow, (0.0, row.finished_at))
        runs[row.flow] = (seconds + row.seconds, max(finished, row.finished_at))
        add("elt_stage_duration_seconds", (row.flow, row.stage), row.seconds)
        add("elt_stage_failed", (row.flow, row.stage), float(row.status != "ok"))
    for flow, (seconds, finished) in runs.items():
        add("elt_run_duration_seconds", (flow,), seconds)
        add("elt_run_finished_timestamp_seconds", (flow,), finished.timestamp())
    for load in snapshot.loads:
        key = (load.source, load.dataset, load.table)
        add("elt_last_load_rows", key, load.rows)
        add("elt_rows_loaded_total", key, load.total_rows)
        add("elt_last_load_timestamp_seconds", key, load.finished_at.timestamp())
        add("elt_freshness_lag_seconds", key, max(0.0, (at - load.finished_at).total_seconds()))
        sla = snapshot.slas.get((load.source, load.table)) or snapshot.slas.get((load.source, "*"))
        if sla is not None:
            add("elt_freshness_sla_seconds", key, sla.total_seconds())
    for contract in snapshot.contracts:
        add("elt_contract_passed", (contract.table,), float(contract.passed))
        add("elt_contract_checked_timestamp_seconds", (contract.table,), contract.checked_at.timestamp())
    for slot in snapshot.slots:
        add("elt_cdc_slot_lag_bytes", (slot.source, slot.slot), slot.retained_bytes)
    for anomaly in snapshot.anomalies:
        key = (anomaly.dataset, anomaly.table, anomaly.metric)
        if anomaly.score is not None:  # a series still learning has no score yet
            add("elt_anomaly_score", key, anomaly.score)
        if anomaly.level in ANOMALY_LEVELS:
            add("elt_anomaly_level", key, ANOMALY_LEVELS[anomaly.level])
    add("elt_metrics_up", (), float(up))
    if snapshot.read_at is not None:
        add("elt_metrics_read_timestamp_seconds", (), snapshot.read_at.timestamp())
    return list(built.values())


class AuditCollector(Collector):
    """A prometheus_client collector that reads the audit tables when scraped (cached
    ``cache_seconds``), and serves the last good read, with ``elt_metrics_up 0``, when
    the warehouse cannot be read."""

    def __init__(
        self,
        settings: Settings,
        read: Callable[[Settings], AuditSnapshot] = read_audit,
        cache_seconds: float = CACHE_SECONDS,
    ) -> None:
        self._settings = settings
        self._read = read
        self._cache_seconds = cache_seconds
        self._lock = threading.Lock()  # scrapes run in threads: one reads, the others wait for it
        self._snapshot = AuditSnapshot()
        self._up = False
        self._tried_at: float | None = None

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            if self._tried_at is None or time.monotonic() - self._tried_at >= self._cache_seconds:
                self._refresh()
            snapshot, up = self._snapshot, self._up
        yield from families(snapshot, up, now())

    def _refresh(self) -> None:
        """A failed read is cached too: a warehouse that is down is not asked at every scrape."""
        was_down = self._tried_at is not None and not self._up
        self._tried_at = time.monotonic()
        try:
            self._snapshot = self._read(self._settings)
        except Exception as exc:  # whatever the warehouse's driver raises, the scrape must go on
            logger.warning(
                "could not read the audit tables, serving the last good values with elt_metrics_up 0: %s",
                first_line(exc),
            )
            self._up = False
            return
        if was_down:
            logger.info("the audit tables can be read again")
        self._up = True


def url_of(host: str, port: int) -> str:
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/metrics"


def _say(text: str) -> None:
    print(text, flush=True)  # at once, also when stdout is a file or a pipe


def serve(
    settings: Settings,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    announce: Callable[[str], None] = _say,
) -> None:
    """Serve ``/metrics`` on ``host:port`` until interrupted (Ctrl-C, SIGTERM); ``announce``
    gets a line with the URL once it listens.

    Only this collector is registered, no process or Python metrics, so the dashboard can
    show every metric served. 127.0.0.1 by default: the values name every table; put a
    proxy in front rather than listening on every interface.
    """
    logger.setLevel(logging.INFO)  # the recovery after failed reads too; Prefect's root level is WARNING
    collector = AuditCollector(settings)
    list(collector.collect())  # the first read before listening: no scrape waits for it
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on {host}:{port} ({exc.strerror or exc}); choose another --port or --host"
        ) from None
    announce(f"serving {url_of(host, port)} from {settings.dataset(DATASET)} (Ctrl-C stops)")
    try:
        thread.join()
    finally:
        server.shutdown()
        server.server_close()
