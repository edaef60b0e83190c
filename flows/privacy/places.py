"""The PII map: every table of the warehouse where a person can be, and how to find them there.

Drawn from three declarations and what the warehouse holds now:

- each source's ``SourceSpec.privacy`` (dlt column hints ``x-pii`` / ``x-subject``, see
  dlt_sources/common/privacy.py): its raw tables, their copies in dlt's staging dataset
  (``raw_<source>_staging``, the last merge's rows) and the source's rejected records;
- dbt ``meta`` on the columns of snapshots and models (``subject: shop_customer``,
  ``pii: email``, ``subject_field`` for a JSON field) and ``meta.erasure`` on the model
  (``delete`` or ``redact``): the snapshots (SCD2 history), the marts where dbt builds them
  (``*_marts_audit``), where consumers read them (``*_marts``) and the quarantined copies
  (``*_marts_quarantine.<mart>__<run>``); views are listed but hold nothing;
- the audit trail's free-text columns, which could quote a value (profiles' top values,
  load errors, failed checks).

Every environment's copy is in the map: a table belongs to a place by its schema's ending
(``dev_ci_raw_shop`` is ``raw_shop`` of a developer's environment), so an erasure reaches
dev and CI schemas too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from dlt_sources.common.privacy import DELETE, REDACT, REJECTED_RECORDS, SubjectColumn, TablePrivacy
from dlt_sources.registry import SOURCES

# what a table is, as `elt privacy map` says it
RAW, DLT_STAGING, REJECTED, SNAPSHOT, MART_AUDIT, MART, QUARANTINE, VIEW, AUDIT = (
    "raw table",
    "dlt staging copy",
    "rejected records",
    "snapshot history",
    "mart, audit copy",
    "published mart",
    "quarantined mart",
    "view (stores nothing)",
    "audit trail",
)
# dbt's schemas by what ends their names (flows/config.py dbt_schema + dbt_project.yml)
_DBT_SCHEMA_ENDINGS = {
    "_snapshots": SNAPSHOT,
    "_marts_audit": MART_AUDIT,
    "_marts_quarantine": QUARANTINE,
    "_marts": MART,
}
# free text of the audit trail that could quote a person's value: nulled where it does
AUDIT_TEXT: Mapping[str, tuple[str, ...]] = {
    "profiles": ("detail",),
    "loads": ("error",),
    "contracts": ("failed_checks",),
}
AUDIT_DATASET = "elt_audit"


@dataclass(frozen=True)
class Place:
    """One table of the warehouse that can hold a person."""

    schema: str
    table: str
    kind: str
    owner: str  # the source or the dbt node that writes it
    privacy: TablePrivacy
    columns: Mapping[str, str]  # the table's columns as the warehouse names them → data type

    @property
    def name(self) -> str:
        return f"{self.schema}.{self.table}"

    @property
    def stores_rows(self) -> bool:
        return self.kind != VIEW

    def column(self, declared: str) -> str | None:
        """The warehouse's name of a declared column (Snowflake upper-cases), or None if absent."""
        lowered = declared.lower()
        return next((name for name in self.columns if name.lower() == lowered), None)

    def subjects(self) -> list[SubjectColumn]:
        """The declared identifier columns the table has."""
        return [s for s in self.privacy.subjects if self.column(s.column)]

    def mentions(self) -> list[str]:
        return [name for name in self.privacy.mentions if self.column(name)]

    def redacted(self) -> list[str]:
        """The columns a redaction nulls, as the warehouse names them."""
        return [found for name in self.privacy.redacted if (found := self.column(name))]


Catalog = Iterable[tuple[str, str, str, str]]
"""(schema, table, column, data type) of every table: flows/audit.py ``schema_columns``."""


def privacy_map(catalog: Catalog, manifest: Mapping[str, Any]) -> list[Place]:
    """Every table of ``catalog`` that can hold a person, by schema and table name."""
    tables: dict[tuple[str, str], dict[str, str]] = {}
    for schema, table, column, data_type in catalog:
        tables.setdefault((schema.lower(), table.lower()), {})[column] = data_type
    raw = _raw_declarations()
    dbt = _dbt_declarations(manifest)
    places = []
    for (schema, table), columns in sorted(tables.items()):
        found = (
            _raw_place(schema, table, raw) or _dbt_place(schema, table, dbt) or _audit_place(schema, table)
        )
        if found is not None:
            kind, owner, privacy = found
            places.append(Place(schema, table, kind, owner, privacy, columns))
    return places


def personal_columns(manifest: Mapping[str, Any]) -> Callable[[str, str], frozenset[str]]:
    """``(schema, table) → the lower-case names of its personal and identifying columns``: what
    the profiles (flows/profiles.py) must not quote values of (min, max, top values)."""
    raw, dbt = _raw_declarations(), _dbt_declarations(manifest)

    def of(schema: str, table: str) -> frozenset[str]:
        schema, table = schema.lower(), table.lower()
        found = _raw_place(schema, table, raw) or _dbt_place(schema, table, dbt)
        return frozenset(name.lower() for name in found[2].redacted) if found else frozenset()

    return of


def _raw_declarations() -> dict[str, tuple[str, Mapping[str, TablePrivacy]]]:
    """``raw_<source>`` → the source and its tables' declarations."""
    return {f"raw_{name}": (name, spec.privacy) for name, spec in SOURCES.items() if spec.privacy}


def _raw_place(
    schema: str, table: str, raw: Mapping[str, tuple[str, Mapping[str, TablePrivacy]]]
) -> tuple[str, str, TablePrivacy] | None:
    for dataset, (source, declared) in raw.items():
        for ending, kind in ((f"{dataset}_staging", DLT_STAGING), (dataset, RAW)):
            if not _ends(schema, ending):
                continue
            if table == REJECTED_RECORDS and kind == RAW:
                return REJECTED, source, TablePrivacy(DELETE, mentions=("record",))
            if table in declared:
                return kind, source, declared[table]
    return None


@dataclass(frozen=True)
class _DbtDeclaration:
    name: str
    resource_type: str
    materialized: str
    privacy: TablePrivacy


def _dbt_declarations(manifest: Mapping[str, Any]) -> dict[str, _DbtDeclaration]:
    """Models and snapshots whose columns' ``meta`` names a subject or personal data, by alias."""
    found = {}
    for node in manifest.get("nodes", {}).values():
        if node.get("resource_type") not in ("model", "snapshot"):
            continue
        config = node.get("config") or {}
        subjects, categories = [], {}
        for name, column in (node.get("columns") or {}).items():
            meta = {**(column.get("meta") or {}), **((column.get("config") or {}).get("meta") or {})}
            if meta.get("subject"):
                subjects.append(SubjectColumn(name, str(meta["subject"]), meta.get("subject_field")))
            if meta.get("pii"):
                categories[name] = str(meta["pii"])
        if not subjects and not categories:
            continue
        meta = {**(node.get("meta") or {}), **(config.get("meta") or {})}
        privacy = TablePrivacy(str(meta.get("erasure", DELETE)), tuple(subjects), categories)
        alias = (node.get("alias") or node["name"]).lower()
        materialized = "snapshot" if node["resource_type"] == "snapshot" else str(config.get("materialized"))
        found[alias] = _DbtDeclaration(node["name"], node["resource_type"], materialized, privacy)
    return found


def _dbt_place(
    schema: str, table: str, dbt: Mapping[str, _DbtDeclaration]
) -> tuple[str, str, TablePrivacy] | None:
    kind = next((kind for ending, kind in _DBT_SCHEMA_ENDINGS.items() if schema.endswith(ending)), None)
    if kind == QUARANTINE:
        table = table.split("__", 1)[0]  # <mart>__<run id>
    # a relation dbt left beside the model (a snapshot's or an incremental model's staging
    # table, a table being swapped in) holds the same rows
    table = table.removesuffix("__dbt_tmp").removesuffix("__dbt_backup")
    declared = dbt.get(table)
    if declared is None:
        return None
    if declared.materialized in ("view", "ephemeral"):
        return VIEW, declared.name, declared.privacy
    if kind is None:
        return None
    return kind, declared.name, declared.privacy


def _ends(schema: str, dataset: str) -> bool:
    """``schema`` is ``dataset`` in some environment (an environment's prefix ends with ``_``)."""
    return schema == dataset or schema.endswith(f"_{dataset}")


def _audit_place(schema: str, table: str) -> tuple[str, str, TablePrivacy] | None:
    if _ends(schema, AUDIT_DATASET) and table in AUDIT_TEXT:
        return AUDIT, "elt", TablePrivacy(REDACT, mentions=AUDIT_TEXT[table])
    return None
