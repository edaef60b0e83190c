"""Which nodes dbt's own selector picks: what a test compares a build's nodes with, never
flows/dbt_graph.py's planning."""

from __future__ import annotations

import json

from flows.config import TRANSFORM_DIR
from flows.transform import release_duckdb_connection


def dbt_selects(select: str, exclude: str | None = None) -> set[str]:
    """The models and snapshots ``dbt ls --select SELECT [--exclude EXCLUDE]`` lists."""
    from dbt.cli.main import dbtRunner

    listed = dbtRunner().invoke(
        [
            *["ls", "--select", select, *(["--exclude", exclude] if exclude else [])],
            *["--resource-type", "model", "--resource-type", "snapshot", "--log-level", "none"],
            *["--output", "json", "--output-keys", "unique_id"],
            *["--project-dir", str(TRANSFORM_DIR), "--profiles-dir", str(TRANSFORM_DIR)],
        ]
    )
    release_duckdb_connection()
    assert listed.success, listed.exception
    return {json.loads(line)["unique_id"] for line in listed.result}
