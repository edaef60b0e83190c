"""What a change does to the data: each model a dev or CI build made, compared with production.

Rows are matched by the model's primary key: ``meta: {primary_key: [...]}`` if the model
declares one, else the column its ``unique`` test covers, else the columns of its
``unique_combination`` test. For each model: rows added, removed and changed (same key,
some other column differs), the count of changed values per column, and the schema
changes (columns added, removed, retyped). One SQL statement per model, run in the
warehouse, so nothing but counts leaves it. A model without a key gets row counts and
schema changes only, and says so.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from flows.config import Settings
from flows.pipelines import catalog_pipeline

_PLAIN_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")


@dataclass(frozen=True)
class Relation:
    """A table or view as the manifest names it."""

    schema: str
    identifier: str
    rendered: str  # dbt's relation_name, quoted as the warehouse needs


@dataclass
class ModelDiff:
    model: str
    primary_key: list[str]
    rows_production: int | None  # None: the model is new
    rows_change: int
    added: int | None = None
    removed: int | None = None
    changed: int | None = None
    changed_values: dict[str, int] = field(default_factory=dict)
    columns_added: list[str] = field(default_factory=list)
    columns_removed: list[str] = field(default_factory=list)
    columns_retyped: dict[str, tuple[str, str]] = field(default_factory=dict)
    note: str | None = None

    @property
    def changed_percent(self) -> float:
        """Rows added, removed or changed, as a share of production's rows."""
        if self.rows_production is None:
            return 0.0
        touched = (self.added or 0) + (self.removed or 0) + (self.changed or 0)
        return 100.0 * touched / max(self.rows_production, 1)

    @property
    def schema_changed(self) -> bool:
        return bool(self.columns_added or self.columns_removed or self.columns_retyped)

    def as_json(self) -> dict[str, Any]:
        return asdict(self) | {"changed_percent": round(self.changed_percent, 3)}


def relation_of(node: Mapping[str, Any]) -> Relation:
    return Relation(node["schema"], node.get("alias") or node["name"], node["relation_name"])


def primary_key(manifest: Mapping[str, Any], unique_id: str) -> list[str]:
    """The model's key, from its meta or its uniqueness tests; empty when it has none."""
    node = manifest["nodes"][unique_id]
    declared = (node.get("meta") or {}).get("primary_key") or (node.get("config", {}).get("meta") or {}).get(
        "primary_key"
    )
    if declared:
        return [declared] if isinstance(declared, str) else list(declared)
    unique_columns, combinations = [], []
    for test in manifest["nodes"].values():
        if test.get("resource_type") != "test" or test.get("attached_node") != unique_id:
            continue
        metadata = test.get("test_metadata") or {}
        kwargs = metadata.get("kwargs") or {}
        if metadata.get("name") == "unique" and test.get("column_name"):
            unique_columns.append(test["column_name"])
        elif metadata.get("name") == "unique_combination":
            combinations.append(list((kwargs.get("arguments") or kwargs).get("columns") or []))
    if unique_columns:
        return [sorted(unique_columns)[0]] if len(unique_columns) > 1 else unique_columns
    return combinations[0] if combinations else []


def diff_models(
    settings: Settings,
    change: Mapping[str, Any],
    production: Mapping[str, Any],
    models: Sequence[str],
) -> list[ModelDiff]:
    """Compare each of ``models`` (unique ids) as built in ``change`` with ``production``."""
    diffs = []
    with catalog_pipeline(settings, settings.dbt_schema).sql_client() as client:
        for unique_id in models:
            node = change["nodes"][unique_id]
            if node.get("config", {}).get("materialized") == "ephemeral":
                continue
            after = relation_of(node)
            before_node = production.get("nodes", {}).get(unique_id)
            before = relation_of(before_node) if before_node else None
            diffs.append(_diff(client, settings, node["name"], before, after, primary_key(change, unique_id)))
    return diffs


def _diff(
    client: Any, settings: Settings, model: str, before: Relation | None, after: Relation, key: list[str]
) -> ModelDiff:
    after_columns = _columns(client, settings, after)
    rows_after = _count(client, after)
    before_columns = _columns(client, settings, before) if before else {}
    if not before_columns:
        return ModelDiff(model, key, None, rows_after, note="new model: not in production")
    diff = ModelDiff(
        model,
        key,
        _count(client, before),  # type: ignore[arg-type]
        rows_after,
        columns_added=[name for name in after_columns if name not in before_columns],
        columns_removed=[name for name in before_columns if name not in after_columns],
        columns_retyped={
            name: (before_columns[name], kind)
            for name, kind in after_columns.items()
            if name in before_columns and before_columns[name] != kind
        },
    )
    if not key or not set(key) <= (set(before_columns) & set(after_columns)):
        diff.note = "no primary key in both versions: rows are counted, not matched"
        return diff
    compared = [
        name
        for name in after_columns
        if name in before_columns and name not in key and name not in diff.columns_retyped
    ]
    counts = _compare(client, before, after, key, compared)  # type: ignore[arg-type]
    diff.added, diff.removed, diff.changed = counts[:3]
    diff.changed_values = {name: count for name, count in zip(compared, counts[3:], strict=True) if count}
    return diff


def _compare(
    client: Any, before: Relation, after: Relation, key: list[str], compared: list[str]
) -> list[int]:
    """Added, removed, changed rows, then the changed values of each compared column."""
    both = "p.elt_present = 1 and c.elt_present = 1"
    distinct = [f"p.{_quote(name)} is distinct from c.{_quote(name)}" for name in compared]
    columns = ", ".join(_quote(name) for name in [*key, *compared])
    measures = [
        "count(case when p.elt_present is null then 1 end)",
        "count(case when c.elt_present is null then 1 end)",
        f"count(case when {both} and ({' or '.join(distinct) or 'false'}) then 1 end)",
        *(f"count(case when {both} and {condition} then 1 end)" for condition in distinct),
    ]
    joined = " and ".join(f"p.{_quote(name)} = c.{_quote(name)}" for name in key)
    sql = (
        f"select {', '.join(measures)}"
        f" from (select 1 as elt_present, {columns} from {before.rendered}) as p"
        f" full outer join (select 1 as elt_present, {columns} from {after.rendered}) as c on {joined}"
    )
    return [int(value) for value in client.execute_sql(sql)[0]]


def _count(client: Any, relation: Relation) -> int:
    return int(client.execute_sql(f"select count(*) from {relation.rendered}")[0][0])


def _columns(client: Any, settings: Settings, relation: Relation) -> dict[str, str]:
    """Column name → type, lower case, in table order; empty when the relation does not exist."""
    rows = client.execute_sql(
        f"select lower(column_name), lower(data_type) from {_information_schema(settings, relation)}.columns"
        " where lower(table_schema) = %s and lower(table_name) = %s order by ordinal_position",
        relation.schema.lower(),
        relation.identifier.lower(),
    )
    return {name: kind for name, kind in rows or ()}


def _information_schema(settings: Settings, relation: Relation) -> str:
    return settings.warehouse.information_schema(settings, relation.schema)


def _quote(name: str) -> str:
    return name if _PLAIN_IDENTIFIER.fullmatch(name) else '"' + name.replace('"', '""') + '"'


def markdown(diffs: Sequence[ModelDiff]) -> list[str]:
    """The diff as Markdown lines for a pull-request comment."""
    if not diffs:
        return ["No model changed."]
    lines = [
        "| Model | Rows (production → change) | Added | Removed | Changed | Schema |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for diff in diffs:
        before = "new" if diff.rows_production is None else f"{diff.rows_production:,}"
        schema = [f"+{c}" for c in diff.columns_added] + [f"-{c}" for c in diff.columns_removed]
        schema += [f"{c}: {old} → {new}" for c, (old, new) in diff.columns_retyped.items()]
        cells = [_number(diff.added), _number(diff.removed), _number(diff.changed)]
        lines.append(
            f"| {diff.model} | {before} → {diff.rows_change:,} | {' | '.join(cells)} | {', '.join(schema)} |"
        )
    for diff in diffs:
        if diff.changed_values:
            values = ", ".join(f"`{name}` {count:,}" for name, count in diff.changed_values.items())
            lines.append(f"\n**{diff.model}**: changed values per column: {values}")
        if diff.note:
            lines.append(f"\n**{diff.model}**: {diff.note}")
    return lines


def _number(value: int | None) -> str:
    return "n/a" if value is None else f"{value:,}"


def diff_lines(diffs: Sequence[ModelDiff]) -> list[str]:
    """The diff for a terminal: one short line per model, then its changed columns."""
    lines = []
    for diff in diffs:
        before = "new" if diff.rows_production is None else f"{diff.rows_production:,}"
        line = f"{diff.model}: {before} -> {diff.rows_change:,} rows"
        if diff.added is not None:
            line += f"; added {diff.added:,}, removed {diff.removed:,}, changed {diff.changed:,}"
        lines.append(line)
        if diff.changed_values:
            lines.append(
                "  changed: " + ", ".join(f"{name} {count:,}" for name, count in diff.changed_values.items())
            )
        if diff.schema_changed:
            schema = [f"+{c}" for c in diff.columns_added] + [f"-{c}" for c in diff.columns_removed]
            schema += [f"{c} {old}->{new}" for c, (old, new) in diff.columns_retyped.items()]
            lines.append("  columns: " + ", ".join(schema))
        if diff.note:
            lines.append(f"  {diff.note}")
    return lines
