"""A real Prometheus scrapes ``elt metrics serve`` and every query of the Grafana dashboard
returns data.

GIVEN the audit tables of a DuckDB warehouse holding two runs (loads, contracts, stages,
CDC slots, anomalies), WHEN ``elt metrics serve`` runs as a process and Debian's
Prometheus scrapes it every second, THEN each PromQL expression of
deployments/grafana/elt-dashboard.json returns at least one series, and the series show
the latest run, not the first.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from flows.audit import (
    FAILED,
    LOADED,
    AnomalyRecord,
    ContractRecord,
    LoadRecord,
    SlotRecord,
    StageRecord,
    now,
    record_tables,
)
from flows.config import PROJECT_DIR, load_settings
from standins.postgres import free_port
from tests.support.processes import start_process_group, stop_process_group

BIN = Path(sys.executable).parent
DASHBOARD = PROJECT_DIR / "deployments" / "grafana" / "elt-dashboard.json"
WAIT_S = 15


def prometheus_binary() -> str | None:
    if found := shutil.which("prometheus"):
        return found
    return "/usr/bin/prometheus" if os.access("/usr/bin/prometheus", os.X_OK) else None  # not on PATH


PROMETHEUS = prometheus_binary()
pytestmark = pytest.mark.skipif(
    PROMETHEUS is None, reason="Debian's prometheus package is not installed; .ci/run installs it as root"
)


def seed_two_runs() -> None:
    """An older run that loaded everything, then the latest one: a stripe load failed, the raw
    contracts stage failed, the slot's lag grew, an anomaly series went from learning to warn
    and another appeared failing."""
    settings = load_settings("duckdb")
    record_tables(settings, first_run("run-1", now() - timedelta(hours=2)))
    record_tables(settings, latest_run("run-2", now() - timedelta(minutes=10)))


def load(
    run: str, source: str, table: str | None, rows: int, at: datetime, outcome: str = LOADED
) -> LoadRecord:
    return LoadRecord(run, source, f"raw_{source}", table, rows, at - timedelta(seconds=30), at, outcome)


def anomaly(run: str, metric: str, score: float | None, level: str, at: datetime) -> AnomalyRecord:
    return AnomalyRecord(run, "raw_shop", "orders", metric, 5.0, 4.0, 2.0, 6.0, score, level, at, at)


def first_run(run: str, at: datetime) -> dict[str, list[Any]]:
    return {
        "loads": [
            load(run, "shop", "orders", 100, at),
            load(run, "shop", "customers", 20, at),
            load(run, "stripe", "charges", 7, at),
        ],
        "contracts": [
            ContractRecord(run, "raw_shop.orders", True, None, at),
            ContractRecord(run, "raw_stripe.charges", True, None, at),
        ],
        "stages": [
            StageRecord(run, "elt", "ingest", 10.0, "ok", at),
            StageRecord(run, "elt", "raw contracts", 3.0, "ok", at),
            StageRecord(run, "elt", "build", 20.0, "ok", at),
        ],
        "cdc_slots": [SlotRecord(run, "shop", "elt_shop", 1_000, at)],
        "anomalies": [anomaly(run, "row_count", None, "learning", at)],
    }


def latest_run(run: str, at: datetime) -> dict[str, list[Any]]:
    return {
        "loads": [
            load(run, "shop", "orders", 5, at),
            load(run, "shop", "customers", 0, at),
            load(run, "stripe", None, 0, at, FAILED),
        ],
        "contracts": [
            ContractRecord(run, "raw_shop.orders", True, None, at),
            ContractRecord(run, "raw_stripe.charges", False, "row_count: 0 rows", at),
        ],
        "stages": [
            StageRecord(run, "elt", "ingest", 12.0, "ok", at),
            StageRecord(run, "elt", "raw contracts", 2.0, "failed", at),
        ],
        "cdc_slots": [SlotRecord(run, "shop", "elt_shop", 5_000, at)],
        "anomalies": [
            anomaly(run, "row_count", 3.5, "warn", at),
            anomaly(run, "null_rate:email", 6.0, "fail", at),
        ],
    }


@dataclass(frozen=True)
class Prometheus:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def query(self, expr: str) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=5)
        body = response.json()
        assert body.get("status") == "success", f"{expr}: {body}"
        return body["data"]["result"]

    def values(self, expr: str) -> dict[tuple[tuple[str, str], ...], float]:
        """Labels (without __name__, job, instance) -> value of each series ``expr`` returns."""
        hidden = {"__name__", "job", "instance"}
        return {
            tuple(sorted((k, v) for k, v in series["metric"].items() if k not in hidden)): float(
                series["value"][1]
            )
            for series in self.query(expr)
        }


def tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"


@pytest.fixture
def exporter(module_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """``elt metrics serve`` on a free 127.0.0.1 port over a seeded warehouse; its address."""
    workdir = module_dir / "exporter"
    monkeypatch.setenv("ELT_DATA_DIR", str(workdir / "data"))
    monkeypatch.setenv("ELT_DUCKDB_PATH", str(workdir / "warehouse.duckdb"))
    monkeypatch.setenv("ELT_WAREHOUSE", "duckdb")
    seed_two_runs()
    port, log = free_port(), workdir / "exporter.log"
    process = start_process_group(
        [str(BIN / "elt"), "metrics", "serve", "--port", str(port)], log, dict(os.environ), PROJECT_DIR
    )
    try:
        yield f"127.0.0.1:{port}"
        assert process.poll() is None, f"elt metrics serve exited:\n{tail(log)}"
        assert f"serving http://127.0.0.1:{port}/metrics" in log.read_text(), tail(log)
    finally:
        stop_process_group(process, grace_s=5)


@pytest.fixture
def prometheus(module_dir: Path, exporter: str) -> Iterator[Prometheus]:
    """Debian's Prometheus on a free 127.0.0.1 port, scraping the exporter every second."""
    assert PROMETHEUS is not None
    workdir = module_dir / "prometheus"
    workdir.mkdir()
    config = workdir / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, scrape_timeout: 1s}\n"
        f"scrape_configs: [{{job_name: elt, static_configs: [{{targets: ['{exporter}']}}]}}]\n"
    )
    port, log = free_port(), workdir / "prometheus.log"
    process = start_process_group(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        log,
    )
    try:
        yield Prometheus(f"http://127.0.0.1:{port}", process, log)
    finally:
        stop_process_group(process, grace_s=5)


def wait_for_two_scrapes(prometheus: Prometheus) -> None:
    """Two scrapes at least: ``increase()`` needs two samples in its window."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        assert prometheus.process.poll() is None, f"prometheus exited:\n{tail(prometheus.log)}"
        try:
            if any(count >= 2 for count in prometheus.values("count_over_time(elt_metrics_up[1m])").values()):
                return
        except httpx.HTTPError:
            pass  # not listening yet
        time.sleep(0.25)
    up = prometheus.query('up{job="elt"}')
    pytest.fail(
        f"Prometheus did not scrape the exporter twice in {WAIT_S} s (up: {up})\n{tail(prometheus.log)}"
    )


def dashboard_queries() -> list[str]:
    def panels(nodes: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for node in nodes:
            yield node
            yield from panels(node.get("panels", []))

    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in panels(dashboard["panels"]) for target in panel.get("targets", [])]


def test_every_dashboard_query_returns_data_from_a_real_prometheus(prometheus: Prometheus) -> None:
    wait_for_two_scrapes(prometheus)

    empty = [expr for expr in dashboard_queries() if not prometheus.query(expr)]
    assert not empty, "dashboard queries without data:\n" + "\n".join(empty)

    # the latest row of each series, not the first run's
    assert prometheus.values("elt_metrics_up") == {(): 1.0}
    assert prometheus.values("elt_run_duration_seconds") == {(("flow", "elt"),): 14.0}
    assert prometheus.values("elt_stage_failed") == {
        (("flow", "elt"), ("stage", "ingest")): 0.0,
        (("flow", "elt"), ("stage", "raw contracts")): 1.0,
    }
    orders = (("dataset", "raw_shop"), ("source", "shop"), ("table", "orders"))
    charges = (("dataset", "raw_stripe"), ("source", "stripe"), ("table", "charges"))
    assert prometheus.values("elt_last_load_rows")[orders] == 5.0
    assert prometheus.values("elt_last_load_rows")[charges] == 7.0  # the failed load is not one
    assert prometheus.values("elt_rows_loaded_total")[orders] == 105.0
    assert prometheus.values("elt_freshness_sla_seconds")[orders] == 3600.0  # shop's registry record
    assert 600 <= prometheus.values("elt_freshness_lag_seconds")[orders] < 700
    assert prometheus.values("elt_contract_passed") == {
        (("table", "raw_shop.orders"),): 1.0,
        (("table", "raw_stripe.charges"),): 0.0,
    }
    assert prometheus.values("elt_cdc_slot_lag_bytes") == {(("slot", "elt_shop"), ("source", "shop")): 5000.0}
    assert prometheus.values("elt_anomaly_level") == {
        (("dataset", "raw_shop"), ("metric", "null_rate:email"), ("table", "orders")): 2.0,
        (("dataset", "raw_shop"), ("metric", "row_count"), ("table", "orders")): 1.0,
    }
