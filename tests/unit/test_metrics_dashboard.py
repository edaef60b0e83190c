"""The Grafana dashboard and the metrics agree: a panel queries every metric ``elt metrics
serve`` emits, and no query names one it does not; the collector serves its last good read
when the warehouse cannot be read. (tests/integration/test_metrics_prometheus.py runs every
query through a real Prometheus.)"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from flows.config import PROJECT_DIR, Settings, load_settings
from flows.metrics import (
    METRICS,
    AnomalyRow,
    AuditCollector,
    AuditSnapshot,
    ContractRow,
    LoadRow,
    SlotRow,
    StageRow,
)

DASHBOARD = PROJECT_DIR / "deployments" / "grafana" / "elt-dashboard.json"
AT = datetime(2026, 12, 7, 12, tzinfo=UTC)

# What PromQL spells that is not a metric: keywords and aggregation modifiers.
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}
_KEYWORDS |= {"and", "or", "unless", "inf", "nan", "atan2"}
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GRAFANA_VARIABLES = re.compile(r"\$\{[^}]*\}|\$\w+|\[\[\w+\]\]")
_LABEL_LISTS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_BRACKETS = re.compile(r"\{[^}]*\}|\[[^\]]*\]")
_IDENTIFIER = re.compile(r"(?<![\w.:])([a-zA-Z_:][\w:]*)(?![\w:])(?!\s*\()")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: identifiers that are not functions (followed
    by ``(``), keywords, label names (in ``{}`` or a ``by (…)`` list), ranges or strings."""
    text = _STRINGS.sub('""', expr)
    text = _GRAFANA_VARIABLES.sub("1", text)
    text = _LABEL_LISTS.sub(" ", text)
    text = _BRACKETS.sub(" ", text)
    return {name for name in _IDENTIFIER.findall(text) if name.lower() not in _KEYWORDS}


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("elt_metrics_up", {"elt_metrics_up"}),
        ("time() - elt_run_finished_timestamp_seconds", {"elt_run_finished_timestamp_seconds"}),
        ("sum by (source) (increase(elt_rows_loaded_total[1h]))", {"elt_rows_loaded_total"}),
        ('up{job="elt", instance=~"a.*"} offset 5m', {"up"}),
        ("a / on (source, table) group_left(slot) b", {"a", "b"}),
        ("rate(x[$__rate_interval]) > bool 1e3 unless y", {"x", "y"}),
        ('label_replace(z, "to", "$1", "from", "(.*)")', {"z"}),
        ("sort_desc(elt_anomaly_level) and 2.5", {"elt_anomaly_level"}),
    ],
)
def test_metric_names_are_read_out_of_promql(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def panels(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every panel, those inside collapsed rows too."""
    found = []
    for node in nodes:
        found.append(node)
        found += panels(node.get("panels", []))
    return found


def dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in panels(dashboard["panels"]) for target in panel.get("targets", [])]


def snapshot() -> AuditSnapshot:
    """One row of every kind, so every metric has a sample."""
    return AuditSnapshot(
        stages=[StageRow("elt", "ingest", 3.0, "ok", AT), StageRow("elt", "build", 5.0, "failed", AT)],
        loads=[LoadRow("shop", "raw_shop", "orders", 4, 10, AT)],
        contracts=[ContractRow("raw_shop.orders", False, AT)],
        slots=[SlotRow("shop", "elt_shop", 2048, AT)],
        anomalies=[
            AnomalyRow("raw_shop", "orders", "row_count", 4.2, "fail"),
            AnomalyRow("raw_shop", "orders", "null_rate:email", None, "learning"),
        ],
        slas={("shop", "*"): timedelta(hours=2)},
        read_at=AT,
    )


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load_settings("duckdb")


def scrape(collector: AuditCollector) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Sample name -> (labels, value) of one scrape, through prometheus_client's own exposition."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def test_the_dashboard_queries_exactly_the_metrics_the_collector_emits(settings: Settings) -> None:
    declared = {spec.name for spec in METRICS}
    emitted = set(scrape(AuditCollector(settings, read=lambda _: snapshot())))
    assert emitted == declared, "METRICS and what the collector emits differ"
    queried = set().union(*map(metric_names, dashboard_queries()))
    assert not queried - declared, f"the dashboard queries metrics nobody emits: {sorted(queried - declared)}"
    assert not declared - queried, f"metrics no panel shows: {sorted(declared - queried)}"


def test_every_panel_reads_the_prometheus_variable_and_sets_a_unit() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["schemaVersion"] >= 39
    assert [v["name"] for v in dashboard["templating"]["list"] if v["type"] == "datasource"] == [
        "DS_PROMETHEUS"
    ]
    for panel in panels(dashboard["panels"]):
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        assert panel["fieldConfig"]["defaults"].get("unit"), f"{panel['title']}: no unit"
        assert all(target["datasource"]["uid"] == "${DS_PROMETHEUS}" for target in panel["targets"])


def test_the_latest_row_of_each_series_becomes_its_sample(settings: Settings) -> None:
    samples = scrape(AuditCollector(settings, read=lambda _: snapshot()))
    assert samples["elt_run_duration_seconds"] == [({"flow": "elt"}, 8.0)]
    assert sorted(samples["elt_stage_failed"], key=lambda s: s[0]["stage"]) == [
        ({"flow": "elt", "stage": "build"}, 1.0),
        ({"flow": "elt", "stage": "ingest"}, 0.0),
    ]
    table = {"source": "shop", "dataset": "raw_shop", "table": "orders"}
    assert samples["elt_rows_loaded_total"] == [(table, 10.0)]
    assert samples["elt_freshness_sla_seconds"] == [(table, 7200.0)]  # the source's default SLA
    assert samples["elt_anomaly_level"] == [
        ({"dataset": "raw_shop", "table": "orders", "metric": "row_count"}, 2.0),
        ({"dataset": "raw_shop", "table": "orders", "metric": "null_rate:email"}, 0.0),
    ]
    assert len(samples["elt_anomaly_score"]) == 1  # none while learning


def test_reads_are_cached_and_a_failed_read_serves_the_last_good_values(settings: Settings) -> None:
    reads: list[datetime] = []

    def read(_: Settings) -> AuditSnapshot:
        """The first read succeeds, every later one finds the file locked by a load."""
        reads.append(datetime.now(UTC))
        if len(reads) > 1:
            raise RuntimeError('IO Error: Could not set lock on file "warehouse.duckdb"')
        return snapshot()

    cached = AuditCollector(settings, read=read, cache_seconds=60)
    scrape(cached)
    assert scrape(cached)["elt_metrics_up"] == [({}, 1.0)]
    assert len(reads) == 1

    reads.clear()
    uncached = AuditCollector(settings, read=read, cache_seconds=0)
    first, second = scrape(uncached), scrape(uncached)
    assert len(reads) == 2
    assert first["elt_metrics_up"] == [({}, 1.0)] and second["elt_metrics_up"] == [({}, 0.0)]
    assert second["elt_last_load_rows"] == first["elt_last_load_rows"]
    assert second["elt_metrics_read_timestamp_seconds"] == first["elt_metrics_read_timestamp_seconds"]
    # the lag still grows from the last good read's load time
    assert second["elt_freshness_lag_seconds"][0][1] >= first["elt_freshness_lag_seconds"][0][1]
