"""``elt docs``: dbt's documentation site, with the dlt sources and the Soda contracts in it.

dbt documents what its YAML says. Two things the YAML cannot know are added to the
manifest after ``dbt docs generate``, before the site reads it:

* each raw table's origin and shape, from the dlt schema the load stored in the warehouse
  (``_dlt_version`` of each raw dataset: column types, nullability, primary key, write
  disposition) and from the source's registry record (which API or database it is);
* each table's Soda contract (its file, served beside the site, and the checks it holds),
  and for each mart the raw tables its data comes from, however many models lie between.

The site is served on 127.0.0.1 only.
"""

from __future__ import annotations

import functools
import json
import shutil
from collections.abc import Mapping
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final

import yaml

from dlt_sources.registry import SOURCES
from flows.config import CHECKS_DIR, TRANSFORM_DIR, Settings, environment
from flows.dbt_graph import DbtGraph, is_mart
from flows.pipelines import catalog_pipeline
from flows.transform import generate_dbt_docs

CONTRACTS_FOLDER: Final[str] = "contracts"  # the contracts' copies, beside the site's files
RAW_PREFIX: Final[str] = "raw_"
DOCS_FOLDER: Final[Path] = TRANSFORM_DIR / "target" / "docs"


def generate_docs(settings: Settings, folder: Path) -> Path:
    """``dbt docs generate`` into ``folder``, the manifest enriched; returns ``folder``."""
    with environment(settings.tool_environment()):
        generate_dbt_docs(folder)
    manifest_path = folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    describe_sources(manifest, settings)
    link_contracts(manifest, folder)
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    return folder


def describe_sources(manifest: dict[str, Any], settings: Settings) -> None:
    """Each raw table's description gets where it comes from and how dlt loads it; columns
    the YAML does not list are added from the dlt schema, with their types."""
    schemas = {dataset: dlt_schema(settings, dataset) for dataset in _raw_datasets(manifest)}
    for node in manifest.get("sources", {}).values():
        dataset = str(node["schema"])
        source = SOURCES.get(_source_name(dataset, settings))
        table = (schemas.get(dataset) or {}).get("tables", {}).get(node.get("identifier") or node["name"])
        if source is None or table is None:
            continue
        columns = table.get("columns") or {}
        keys = [name for name, column in columns.items() if column.get("primary_key")]
        lines = [
            f"**Loaded by dlt** from {source.origin or source.name} (`dlt_sources/{source.name}`),"
            f" write disposition `{table.get('write_disposition', 'append')}`"
            + (f", primary key `{', '.join(keys)}`" if keys else "")
            + "."
        ]
        _append(node, lines)
        documented = node.setdefault("columns", {})
        for name, column in columns.items():
            entry = documented.setdefault(name, {"name": name, "description": "", "meta": {}, "tags": []})
            entry["data_type"] = entry.get("data_type") or column.get("data_type")
            shape = ", ".join(
                word
                for word, applies in (
                    ("not null", column.get("nullable") is False),
                    ("primary key", name in keys),
                )
                if applies
            )
            if not entry.get("description"):
                entry["description"] = f"dlt: {column.get('data_type')}{', ' + shape if shape else ''}"


def link_contracts(manifest: dict[str, Any], folder: Path, checks_dir: Path = CHECKS_DIR) -> None:
    """Each table with a contract links it (a copy under ``contracts/``) and lists its checks;
    each mart lists the raw tables its data comes from."""
    copies = folder / CONTRACTS_FOLDER
    shutil.rmtree(copies, ignore_errors=True)
    shutil.copytree(checks_dir, copies, ignore=shutil.ignore_patterns("datasources"))
    graph = DbtGraph.from_manifest(manifest)
    for unique_id, node in manifest.get("sources", {}).items():
        source = graph.sources[unique_id]
        contract = checks_dir / "raw" / source.schema.removeprefix(RAW_PREFIX) / f"{source.table}.yml"
        _append(node, _contract_lines(contract, checks_dir))
    for unique_id, node in manifest.get("nodes", {}).items():
        graph_node = graph.nodes.get(unique_id)
        if graph_node is None or not is_mart(graph_node):
            continue
        sources = sorted(graph.ancestor_sources(unique_id), key=lambda uid: str(graph.sources[uid]))
        links = ", ".join(f"[{graph.sources[uid]}](#!/source/{uid})" for uid in sources)
        contract = _contract_lines(checks_dir / "marts" / f"{node['name']}.yml", checks_dir)
        _append(node, [f"**Comes from** the raw tables {links}.", *contract])


def _contract_lines(contract: Path, checks_dir: Path) -> list[str]:
    if not contract.is_file():
        return []
    relative = contract.relative_to(checks_dir).as_posix()
    document = yaml.safe_load(contract.read_text(encoding="utf-8")) or {}
    checks = [_check_name(check) for check in document.get("checks") or []]
    for column in document.get("columns") or []:
        checks += [f"{column.get('name')}: {_check_name(check)}" for check in column.get("checks") or []]
    listed = "; ".join(checks)
    return [
        f"**Contract** [checks/{relative}]({CONTRACTS_FOLDER}/{relative}) ({len(checks)} checks: {listed})."
    ]


def _check_name(check: Any) -> str:
    if not isinstance(check, Mapping):
        return str(check)
    kind, settings = next(iter(check.items()))
    name = (settings or {}).get("name") if isinstance(settings, Mapping) else None
    return f"{kind} '{name}'" if name else str(kind)


def _append(node: dict[str, Any], lines: list[str]) -> None:
    if lines:
        node["description"] = "\n\n".join(part for part in (node.get("description"), *lines) if part)


def dlt_schema(settings: Settings, dataset: str) -> dict[str, Any]:
    """The newest dlt schema stored in ``dataset`` (its ``_dlt_version`` table); empty if none."""
    from dlt.destinations.exceptions import DatabaseUndefinedRelation

    try:
        with catalog_pipeline(settings, dataset).sql_client() as client:
            table = client.make_qualified_table_name("_dlt_version")
            rows = client.execute_sql(f"select schema from {table} order by inserted_at desc limit 1")
    except DatabaseUndefinedRelation:
        return {}
    return json.loads(rows[0][0]) if rows else {}


def _raw_datasets(manifest: Mapping[str, Any]) -> set[str]:
    return {str(node["schema"]) for node in manifest.get("sources", {}).values()}


def _source_name(dataset: str, settings: Settings) -> str:
    return dataset.removeprefix(settings.schema_prefix).removeprefix(RAW_PREFIX)


def serve(folder: Path, port: int = 0) -> ThreadingHTTPServer:
    """An HTTP server for ``folder`` on 127.0.0.1 (``port`` 0: a free one); call ``serve_forever``."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    return ThreadingHTTPServer(("127.0.0.1", port), handler)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """The console shows the address once, not a line per request."""
