"""``elt contracts scaffold TABLE``: a first Soda contract for a new table, to edit.

Why generate: a contract starts as the table's columns and keys, which dlt (raw
tables) and dbt (models) already know; typing them by hand is where typos come from.
The scaffold is deliberately plain: schema, row count, missing/duplicate on the
primary key, missing on required columns and valid values where dbt tests declare
them. Business rules are the engineer's to add.

``raw_<source>.<table>`` is read from the dlt schema stored in the warehouse (so the
table must have been loaded once); any other name is a dbt model, read from dbt's
manifest with its column tests, and typed from the built table when it exists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from flows.config import CHECKS_DIR, TRANSFORM_DIR, Settings
from flows.pipelines import source_pipeline

# dlt data types as the DuckDB warehouse (and Soda's schema check) names them
_DUCKDB_TYPES = {
    "text": "varchar",
    "bigint": "bigint",
    "double": "double",
    "bool": "boolean",
    "timestamp": "timestamp with time zone",
    "date": "date",
    "time": "time",
    "json": "json",
    "binary": "blob",
    "wei": "decimal",
}


class ScaffoldError(Exception):
    """The table can't be scaffolded; the message says why and what to do."""


@dataclass
class ColumnSpec:
    name: str
    data_type: str | None = None
    numeric_precision: int | None = None
    numeric_scale: int | None = None
    checks: list[dict[str, Any]] = field(default_factory=list)

    def to_yaml(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"name": self.name}
        if self.data_type:
            spec["data_type"] = self.data_type
        if self.numeric_precision is not None:
            spec["numeric_precision"] = self.numeric_precision
            spec["numeric_scale"] = self.numeric_scale
        if self.checks:
            spec["checks"] = self.checks
        return spec


def scaffold_contract(
    table: str, settings: Settings, *, force: bool = False, checks_dir: Path = CHECKS_DIR
) -> Path:
    """Write the contract of ``table`` under ``checks_dir`` and return its path."""
    schema, _, name = table.rpartition(".")
    if schema.startswith("raw_"):
        source = schema.removeprefix("raw_")
        columns = _from_dlt_schema(source, name, settings)
        path = checks_dir / "raw" / source / f"{name}.yml"
        header = f"# Raw {source} table {name}, loaded by dlt; scaffolded by `elt contracts scaffold`."
        dataset = f"warehouse/{schema}/{name}"
        variables = None
        allow_extra = True  # dlt adds columns when the source does; the raw gate tolerates that
    elif not schema:
        columns = _from_dbt_model(name, settings)
        path = checks_dir / "marts" / f"{name}.yml"
        header = f"# dbt model {name}, checked before publication; scaffolded by `elt contracts scaffold`."
        dataset = f"warehouse/${{var.MARTS_SCHEMA}}/{name}"
        # contracts name production schemas; flows/contract_target.py renders them per environment
        production_schema = settings.dbt_schema.removeprefix(settings.schema_prefix)
        variables = {"MARTS_SCHEMA": {"default": f"{production_schema}_marts_audit"}}
        allow_extra = False  # dbt owns a model's columns: a surprise column is a change to review
    else:
        raise ScaffoldError(f"{table!r}: give raw_<source>.<table> for a raw table or a dbt model name")
    if path.exists() and not force:
        raise ScaffoldError(f"{path} exists; pass --force to overwrite it")
    document: dict[str, Any] = {"dataset": dataset}
    if variables:
        document["variables"] = variables
    schema_check: dict[str, Any] = {"allow_other_column_order": True}
    if allow_extra:
        schema_check["allow_extra_columns"] = True
    document["checks"] = [
        {"schema": schema_check},
        {"row_count": {"threshold": {"must_be_greater_than": 0}}},
    ]
    document["columns"] = [column.to_yaml() for column in columns]
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(document, sort_keys=False, default_flow_style=False, width=100)
    # Soda reads `- missing:` (a null mapping) as "the check with its defaults"
    path.write_text(header + "\n" + text.replace(": null\n", ":\n"))
    return path


def _from_dlt_schema(source: str, table: str, settings: Settings) -> list[ColumnSpec]:
    """Columns and keys from the dlt schema the source's last load stored in the warehouse."""
    pipeline = source_pipeline(source, settings)
    pipeline.sync_destination()
    tables = pipeline.default_schema.data_tables() if pipeline.default_schema_name else []
    found = next((t for t in tables if t["name"] == table), None)
    if found is None:
        known = ", ".join(sorted(t["name"] for t in tables)) or "none: load the source first"
        raise ScaffoldError(f"raw_{source}.{table}: no such table in the dlt schema (tables: {known})")
    columns = []
    for name, hints in found["columns"].items():
        column = ColumnSpec(name, _DUCKDB_TYPES.get(hints.get("data_type", "")))
        if hints.get("data_type") == "decimal":
            column.data_type = "decimal"
            column.numeric_precision, column.numeric_scale = hints.get("precision"), hints.get("scale")
        if hints.get("primary_key"):
            column.checks = [{"missing": None}, {"duplicate": None}]
        elif hints.get("nullable") is False and not name.startswith("_dlt"):
            column.checks = [{"missing": None}]
        columns.append(column)
    return columns


def _from_dbt_model(name: str, settings: Settings) -> list[ColumnSpec]:
    """Columns and their tests from dbt's manifest; types from the built table (DuckDB)."""
    from dbt.cli.main import dbtRunner

    result = dbtRunner().invoke(
        ["parse", "--project-dir", str(TRANSFORM_DIR), "--profiles-dir", str(TRANSFORM_DIR), "--quiet"]
    )
    if not result.success:
        raise ScaffoldError(f"dbt could not parse transform/: {result.exception}")
    manifest = result.result
    node = manifest.nodes.get(f"model.elt.{name}")
    if node is None:
        raise ScaffoldError(f"{name!r} is not a model of transform/ (raw tables: raw_<source>.<table>)")
    types = settings.warehouse.column_types(settings, node.schema, node.alias)
    columns = {column: ColumnSpec(column) for column in node.columns} | {
        column: ColumnSpec(column) for column in types if column not in node.columns
    }
    for column, spec in columns.items():
        spec.data_type, spec.numeric_precision, spec.numeric_scale = types.get(column, (None, None, None))
    for test in manifest.nodes.values():
        if test.resource_type != "test" or getattr(test, "attached_node", None) != node.unique_id:
            continue
        column = getattr(test, "column_name", None)
        meta = getattr(test, "test_metadata", None)
        if column not in columns or meta is None:
            continue
        if meta.name == "not_null":
            columns[column].checks.insert(0, {"missing": None})
        elif meta.name == "unique":
            columns[column].checks.append({"duplicate": None})
        elif meta.name == "accepted_values":
            values = meta.kwargs.get("values") or meta.kwargs.get("arguments", {}).get("values")
            columns[column].checks.append({"invalid": {"valid_values": list(values or [])}})
    return list(columns.values())
