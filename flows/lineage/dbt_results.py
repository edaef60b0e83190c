"""What a dbt build's ``run_results.json`` and manifest say about the tables it wrote.

Plain functions over dbt's JSON, so the lineage (flows/lineage/__init__.py) stays about events.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

# dbt resource types that write a table (tests and unit tests write nothing)
WRITING = frozenset({"model", "snapshot", "seed"})


def built_nodes(run_results: Mapping[str, Any], manifest: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The run results of the nodes that write a table (not tests)."""
    nodes = manifest.get("nodes", {})
    return [
        result
        for result in run_results.get("results") or []
        if nodes.get(result["unique_id"], {}).get("resource_type") in WRITING
    ]


def relations_of(manifest: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """Every node's and source's (schema, table)."""
    nodes, sources = manifest.get("nodes", {}), manifest.get("sources", {})
    found = {uid: (n["schema"], n.get("alias") or n["name"]) for uid, n in nodes.items()}
    return found | {uid: (s["schema"], s.get("identifier") or s["name"]) for uid, s in sources.items()}


def parents_of(
    result: Mapping[str, Any], manifest: Mapping[str, Any], relations: Mapping[str, Any]
) -> list[str]:
    """The nodes and sources a built node reads."""
    node = manifest["nodes"][result["unique_id"]]
    return [parent for parent in node.get("depends_on", {}).get("nodes", []) if parent in relations]


def timing_of(result: Mapping[str, Any]) -> tuple[datetime, datetime]:
    """When the node's execute phase (else its compile phase) started and ended."""
    phases = {t.get("name"): t for t in result.get("timing") or []}
    phase = phases.get("execute") or phases.get("compile") or {}
    now = datetime.now(UTC)
    return _parse(phase.get("started_at")) or now, _parse(phase.get("completed_at")) or now


def _parse(value: str | None) -> datetime | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
