"""Row counts and an order-free checksum of every published mart, comparable across warehouses.

Read through dlt's SQL client of the warehouse (the same code for DuckDB, Snowflake and
BigQuery); values are put in one canonical form first, because each warehouse's driver
returns its own Python types: numbers become text with 4 decimals (int, Decimal and
float alike), timestamps become UTC ISO text (aware or not), dates ISO text.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import dlt
import yaml

from flows.config import TRANSFORM_DIR, Settings

# Columns whose values differ by construction between two builds of the same data:
# dbt's snapshot id hashes a timestamp as text (each warehouse formats it its own way),
# and source_load_id is the id of the dlt load that brought the row.
VOLATILE = {"customer_key", "source_load_id"}


def mart_columns() -> dict[str, list[str]]:
    """Every published mart and its documented columns (transform/models/marts/<mart>.yml)."""
    marts = {}
    for path in sorted((TRANSFORM_DIR / "models" / "marts").glob("*.yml")):
        for model in yaml.safe_load(path.read_text()).get("models", []):
            columns = [column["name"] for column in model.get("columns", [])]
            marts[model["name"]] = [name for name in columns if name not in VOLATILE]
    return marts


def mart_fingerprints(settings: Settings, workdir: Path) -> dict[str, tuple[int, str]]:
    """``mart -> (rows, sha256 of its sorted canonical rows)`` in the published schema."""
    pipeline = dlt.pipeline(
        pipeline_name="elt_fingerprints",
        destination=settings.dlt_destination(),
        dataset_name=f"{settings.dbt_schema}_marts",
        pipelines_dir=str(workdir / f"fingerprints-{settings.warehouse.name}"),
    )
    fingerprints = {}
    with pipeline.sql_client() as client:
        for mart, columns in mart_columns().items():
            rows = client.execute_sql(
                f"select {', '.join(columns)} from {client.make_qualified_table_name(mart)}"
            )
            lines = sorted(repr(tuple(canonical(value) for value in row)) for row in rows or [])
            fingerprints[mart] = (len(lines), hashlib.sha256("\n".join(lines).encode()).hexdigest())
    return fingerprints


def canonical(value: Any) -> Any:
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int | float | Decimal):
        return f"{float(value):.4f}"
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return aware.astimezone(UTC).replace(tzinfo=None).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return str(value)
