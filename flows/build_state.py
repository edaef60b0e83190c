"""What the last builds left behind, kept in the warehouse: the input of the next build's plan.

Why in the warehouse: a run on a fresh worker with an empty disk must build exactly what
a run on the last worker would have built. Four audit tables (``elt_audit``) hold it:

* ``dbt_nodes``: every node a build ran or left out, with its outcome (``success``,
  ``error``, ``skipped``, ``contract failed``, ``not published``, ``waiting``,
  ``modified``); a node whose latest outcome is not a success is *pending*;
* ``publishes``: each mart each build published, and when;
* ``build_inputs``: the loads (run id, dataset, table) each build took in; a load with
  rows that no build took in yet is a change to build from;
* ``dbt_manifests``: the manifest of the latest build (gzip, base64; one row, replaced
  by each build): the base of the next run's ``state:modified``; in production's
  ``elt_audit``, the manifest a developer's or a pull request's build compares with.

Each build writes the outcomes after it ran, then its inputs and manifest; a crash
before or between the writes makes the next run build more than needed, never less.
"""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from flows.audit import now, query_audit, record_tables, utc
from flows.config import Settings
from flows.dbt_graph import BuildPlan, DbtGraph, SourceTable
from flows.results import DbtBuildSummary

# outcomes that end a node's pending state
OK_STATUSES: Final[frozenset[str]] = frozenset({"success", "pass", "warn"})
CONTRACT_FAILED, NOT_PUBLISHED = "contract failed", "not published"
WAITING, MODIFIED = "waiting", "modified"


@dataclass(frozen=True)
class NodeRecord:
    run_id: str
    unique_id: str
    status: str
    recorded_at: datetime


@dataclass(frozen=True)
class PublishRecord:
    """A mart copied to the published schema (``elt status`` shows the latest per mart)."""

    run_id: str
    table_name: str
    published_at: datetime


@dataclass(frozen=True)
class BuildInput:
    run_id: str
    load_run_id: str
    dataset: str
    table_name: str
    recorded_at: datetime


@dataclass(frozen=True)
class ManifestRecord:
    run_id: str
    dbt_version: str
    manifest: str
    recorded_at: datetime


@dataclass(frozen=True)
class Load:
    """A load with rows that no build took in yet."""

    run_id: str
    table: SourceTable
    finished_at: datetime


def unconsumed_loads(settings: Settings) -> list[Load]:
    """Loads that brought rows (inserted, updated or deleted) and no build has taken in."""
    with_rows = (
        "select run_id, dataset, table_name, finished_at from {table} as l"
        " where l.outcome = 'loaded' and l.table_name is not null and l.rows > 0"
    )
    if query_audit(settings, "build_inputs", "select 1 from {table} limit 1"):
        with_rows += (
            " and not exists (select 1 from {taken} as b where b.load_run_id = l.run_id"
            " and b.dataset = l.dataset and b.table_name = l.table_name)"
        )
        loads = query_audit(settings, "loads", with_rows, taken="build_inputs")
    else:  # no build took anything in yet
        loads = query_audit(settings, "loads", with_rows)
    return [
        Load(run_id, SourceTable(dataset.lower(), table.lower()), utc(finished))
        for run_id, dataset, table, finished in loads
    ]


def pending_nodes(settings: Settings) -> frozenset[str]:
    """Nodes whose latest outcome is not a success."""
    rows = query_audit(
        settings,
        "dbt_nodes",
        "select t.unique_id, t.status from {table} as t join ("
        "select unique_id, max(recorded_at) as latest from {table} group by unique_id"
        ") as l on t.unique_id = l.unique_id and t.recorded_at = l.latest",
    )
    latest: dict[str, set[str]] = {}
    for unique_id, status in rows:
        latest.setdefault(unique_id, set()).add(status)
    return frozenset(uid for uid, statuses in latest.items() if not statuses <= OK_STATUSES)


def last_manifest(settings: Settings) -> dict[str, Any] | None:
    """The manifest of the latest build in this warehouse and environment, or None before the first."""
    rows = query_audit(
        settings, "dbt_manifests", "select manifest from {table} order by recorded_at desc limit 1"
    )
    return decode_manifest(rows[0][0]) if rows else None


def encode_manifest(manifest: Mapping[str, Any]) -> str:
    """gzip and base64: a large project's manifest stays far below a warehouse's text limit."""
    return base64.b64encode(gzip.compress(json.dumps(manifest).encode("utf-8"))).decode("ascii")


def decode_manifest(text: str) -> dict[str, Any]:
    return json.loads(gzip.decompress(base64.b64decode(text)))


def write_manifest(manifest: Mapping[str, Any], folder: Path) -> Path:
    """``folder/manifest.json``: where dbt's ``--state`` and ``--defer`` look for it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "manifest.json"
    path.write_text(json.dumps(manifest), encoding="utf-8")
    return folder


def loaded_tables(settings: Settings) -> frozenset[SourceTable]:
    """Every raw table a load ever brought rows to in this warehouse (the loads audit says,
    in one query: asking each dataset's information schema cost seconds on the emulators)."""
    rows = query_audit(
        settings,
        "loads",
        "select distinct dataset, table_name from {table}"
        " where outcome = 'loaded' and table_name is not null and rows > 0",
    )
    return frozenset(SourceTable(dataset.lower(), table.lower()) for dataset, table in rows)


def record_build(
    settings: Settings,
    run_id: str,
    *,
    graph: DbtGraph,
    plan: BuildPlan,
    modified: Iterable[str],
    dbt: DbtBuildSummary | None,
    unpublished: Mapping[str, str],
    published: Sequence[str],
    taken: Sequence[Load],
    manifest: Mapping[str, Any],
) -> None:
    """Write what this build did, so the next one knows what is still to do.

    ``unpublished`` maps marts that were built but not published to why
    (``contract failed`` or ``not published``, for a mart downstream of a failed one).
    """
    recorded_at = now()
    outcomes = {node.unique_id: node.status for node in (dbt.nodes if dbt else ())}
    outcomes |= dict(unpublished)
    outcomes |= {uid: WAITING for uid in plan.waiting}
    # changed code that this build did not reach (out of its scope) stays to do
    outcomes |= {uid: MODIFIED for uid in modified if uid in graph.nodes and uid not in outcomes}
    nodes = [NodeRecord(run_id, uid, status, recorded_at) for uid, status in sorted(outcomes.items())]
    inputs = [
        BuildInput(run_id, load.run_id, load.table.schema, load.table.table, recorded_at) for load in taken
    ]
    stored = ManifestRecord(
        run_id,
        str((manifest.get("metadata") or {}).get("dbt_version")),
        encode_manifest(manifest),
        recorded_at,
    )
    publishes = [PublishRecord(run_id, table, recorded_at) for table in published]
    # outcomes first: a manifest stored without them would hide the failures it records
    record_tables(settings, {"dbt_nodes": nodes, "publishes": publishes})
    record_tables(settings, {"build_inputs": inputs, "dbt_manifests": [stored]})


def latest_publishes(settings: Settings) -> dict[str, datetime]:
    """When each mart was last published."""
    sql = "select table_name, max(published_at) from {table} group by table_name"
    rows = query_audit(settings, "publishes", sql)
    return {table: utc(published) for table, published in rows}
