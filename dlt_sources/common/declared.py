"""Sources declared in YAML, one file per source in a folder (REST APIs, SQL databases).

Why shared: both families find their files, validate every one up front (a typo fails
``elt --help``-time, not a scheduled run at night) and hand out one registry record
(``SourceSpec``) per source name, resolving secrets only when its factory is called. Both
read the same optional keys for operations: ``schedule`` (cron, UTC, of the source's own
deployment), ``freshness`` (``default`` and per-table SLAs such as ``6h``) and ``privacy``
(per table: ``erasure: delete|redact``, ``columns: {<column>: {pii: email, subject: email,
field: <JSON field>}}``, ``mentions: [<JSON column>]``; dlt_sources/common/privacy.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import yaml

from dlt_sources.common.lineage import Origin
from dlt_sources.common.privacy import DELETE, SourcePrivacy, TablePrivacy, pii, subject
from dlt_sources.errors import SourceError
from dlt_sources.spec import FreshnessSla, SourceSpec, parse_duration

OPERATIONS_KEYS = frozenset({"schedule", "freshness", "privacy"})
_FRESHNESS_KEYS = frozenset({"default", "tables"})
_PRIVACY_KEYS = frozenset({"erasure", "columns", "mentions"})
_PRIVACY_COLUMN_KEYS = frozenset({"pii", "subject", "field"})


class _Declared(Protocol):
    name: str
    schedule: str | None
    freshness: FreshnessSla | None
    privacy: SourcePrivacy

    @property
    def table_names(self) -> tuple[str, ...]: ...


NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")


def read_declaration(path: Path, error: type[Exception]) -> Any:
    """The parsed YAML of one declaration file, whose name is the source name."""
    if not NAME_RE.match(path.stem):
        raise error(
            f"{path}: the file name is the source name and the dataset suffix (raw_<name>); "
            "use lower-case letters, digits and underscores, starting with a letter"
        )
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML: {exc}") from None


def read_operations(
    document: dict[str, Any], path: Path, error: type[Exception]
) -> tuple[str | None, FreshnessSla | None, SourcePrivacy]:
    """The optional ``schedule``, ``freshness`` and ``privacy`` of a declaration, validated."""
    schedule = document.get("schedule")
    if schedule is not None and not isinstance(schedule, str):
        raise error(f'{path}: `schedule` must be a cron string such as "0 * * * *" (UTC)')
    freshness = document.get("freshness")
    return (
        schedule,
        None if freshness is None else read_freshness(freshness, f"{path}: freshness", error),
        read_privacy(document.get("privacy") or {}, f"{path}: privacy", error),
    )


def read_privacy(value: Any, where: str, error: type[Exception]) -> SourcePrivacy:
    """``{<table>: {erasure, columns, mentions}}`` as the source's privacy declaration."""
    if not isinstance(value, dict):
        raise error(f"{where} must map table names to `erasure`, `columns` and `mentions`")
    declared = {}
    for table, spec in value.items():
        if not isinstance(spec, dict) or not set(spec) <= _PRIVACY_KEYS:
            raise error(f"{where}.{table} must be a mapping with `erasure`, `columns` and/or `mentions`")
        hints = {}
        for column, keys in (spec.get("columns") or {}).items():
            if not isinstance(keys, dict) or not set(keys) <= _PRIVACY_COLUMN_KEYS:
                raise error(
                    f"{where}.{table}.columns.{column} must be a mapping with `pii`, `subject`, `field`"
                )
            hints[column] = (pii(keys["pii"]) if keys.get("pii") else {}) | (
                subject(keys["subject"], keys.get("field")) if keys.get("subject") else {}
            )
        try:
            declared[table] = TablePrivacy.from_hints(
                hints, spec.get("erasure", DELETE), spec.get("mentions") or ()
            )
        except ValueError as exc:
            raise error(f"{where}.{table}: {exc}") from None
    return declared


def read_freshness(value: Any, where: str, error: type[Exception]) -> FreshnessSla:
    """``{default: 6h, tables: {<table>: 1h}}`` as an SLA; ``where`` names the mapping in errors."""
    if not isinstance(value, dict) or not set(value) <= _FRESHNESS_KEYS:
        raise error(f"{where} must be a mapping with `default` and/or `tables`")
    tables = value.get("tables") or {}
    if not isinstance(tables, dict):
        raise error(f"{where}.tables must map table names to durations such as 30m, 6h or 2d")

    def duration(key: str, text: Any) -> timedelta:
        try:
            return parse_duration(text)
        except ValueError as exc:
            raise error(f"{where}.{key}: {exc}") from None

    default = value.get("default")
    return FreshnessSla(
        default=None if default is None else duration("default", default),
        tables={table: duration(f"tables.{table}", text) for table, text in tables.items()},
    )


def declared_in(
    folder: Path,
    folder_setting: str,
    load_file: Callable[[Path], Any],
    make_source: Callable[[Any], Any],
    error: type[Exception],
    lineage_of: Callable[[Any], Origin],
) -> dict[str, SourceSpec]:
    """Source name -> registry record for every ``*.yml`` / ``*.yaml`` in ``folder``.

    ``load_file`` validates one file (raising ``error`` with the file and field named) and
    returns its config; ``make_source(config)`` builds the dlt source and ``lineage_of(config)``
    names where its tables come from.
    """
    if not folder.is_dir():
        raise error(f"{folder_setting}={folder} is not a folder")
    found: dict[str, SourceSpec] = {}
    for path in sorted(folder.glob("*.yml")) + sorted(folder.glob("*.yaml")):
        config: _Declared = load_file(path)
        if config.name in found:
            raise error(f"{path}: a source named {config.name!r} is declared twice")
        try:
            found[config.name] = SourceSpec(
                name=config.name,
                factory=partial(make_source, config),
                tables=config.table_names,
                schedule=config.schedule,
                freshness=config.freshness,
                privacy=config.privacy,
                origin=_header_comment(path) or f"declared in {path.name}",
                lineage=partial(lineage_of, config),
            )
        except SourceError as exc:
            raise error(f"{path}: {exc}") from None
    return found


def _header_comment(path: Path) -> str:
    """The comment a declared source's file opens with: what the source is, in its author's words."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("# ").strip())
    return " ".join(line for line in lines if line)
