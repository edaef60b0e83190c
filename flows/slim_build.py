"""Build what a change touches, beside production: ``elt dev`` and ``elt ci``.

dbt builds ``state:modified+`` of a checkout's dbt project into schemas of their own
(``dev_<developer>_…``, ``ci_<sha>_…``) and reads everything it does not build from
production. Two manifests, two roles:

* **the comparison base** (dbt's ``--state``): what the change is measured against. For
  ``elt dev`` the manifest of production's latest build (``elt_audit.dbt_manifests``,
  written by every production build, so a fresh laptop reads it from the warehouse); for
  ``elt ci --base REF`` the manifest dbt parses from git ``REF``, so a pull request is
  judged by its own diff, not by whatever production ran last.
* **the deferral target** (``--defer-state``): always production's latest build manifest,
  with each mart pointed at the published schema: consumers' data, never the audit schema
  that may hold a mart its contract quarantined.

The traps, each handled here: ``--defer`` redirects only ``ref()``, so the dbt sources (the
raw tables and ``restricted.pii_salt``) are pointed at production's schemas through
``ELT_SOURCE_SCHEMA_PREFIX``, or every hashed column would differ; the schema prefix would
make every source look modified, so the project compares configs as written
(``state_modified_compare_more_unrendered_values``); a stale dev relation would win over
production without ``--favor-state``; selected models are built with ``--full-refresh``, so
an incremental model left in a dev schema by an older build cannot merge into stale rows;
snapshots are never rebuilt unless their own definition changed (a fresh one would lose
production's history), so their children read production's.
"""

from __future__ import annotations

import copy
import io
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

from dlt_sources.spec import parse_duration
from flows.audit import now, query_audit, record, utc
from flows.build_state import last_manifest, write_manifest
from flows.checks import contract_paths, contracts_of, verify_contracts
from flows.config import PROJECT_DIR, Settings, environment, load_settings
from flows.contract_target import ContractTarget
from flows.dbt_graph import DbtGraph
from flows.errors import ConfigError
from flows.pipelines import catalog_pipeline
from flows.results import ContractResult, DbtBuildSummary
from flows.transform import DbtBuildError, ParsedProject, parse_project, run_dbt_build

SOURCE_PREFIX_VARIABLE: Final[str] = "ELT_SOURCE_SCHEMA_PREFIX"
# the registry of scratch schemas: a dataset of its own, so a CI role needs no write access
# to production's elt_audit (and production's tables stay as they are)
SCRATCH_DATASET, SCRATCH_TABLE = "elt_scratch", "scratch_schemas"
AUDIT_SUFFIX, PUBLISHED_SUFFIX = "_marts_audit", "_marts"
BUILT_STATUSES: Final[frozenset[str]] = frozenset({"success"})


@dataclass(frozen=True)
class Checkout:
    """A working tree of this repository: its dbt project and its contracts."""

    root: Path = PROJECT_DIR

    @property
    def transform(self) -> Path:
        return self.root / "transform"

    @property
    def checks(self) -> Path:
        return self.root / "checks"

    def artifacts(self, kind: str) -> Path:
        """Where a dev or CI build leaves dbt's artifacts and logs (and CI its report)."""
        return self.transform / "target" / kind


@dataclass(frozen=True)
class ScratchSchema:
    """A schema a dev or CI build wrote (``elt_scratch.scratch_schemas``), for ``elt ci cleanup``."""

    prefix: str
    kind: str  # "dev" or "ci"
    schema_name: str
    event: str  # "built" or "dropped"
    recorded_at: datetime


@dataclass(frozen=True)
class ChangeBuild:
    """What one dev or CI build did."""

    prefix: str
    settings: Settings  # of the scratch environment
    production: Settings
    summary: DbtBuildSummary | None  # None when nothing changed
    manifest: dict[str, Any]  # the checkout's, relations in the scratch schemas
    deferral: dict[str, Any]  # production's, marts at the published schema
    contracts: list[ContractResult]
    schemas: list[str]  # every schema it may have written

    @property
    def built_models(self) -> list[str]:
        return built_models(self.summary)

    @property
    def failed_nodes(self) -> list[str]:
        nodes = self.summary.nodes if self.summary else ()
        return [node.unique_id for node in nodes if node.status in ("error", "fail")]

    @property
    def ok(self) -> bool:
        return not self.failed_nodes and all(result.passed for result in self.contracts)


def built_models(summary: DbtBuildSummary | None) -> list[str]:
    """Models a build made (unique ids, in dbt's order)."""
    nodes = summary.nodes if summary else ()
    return [
        node.unique_id
        for node in nodes
        if node.unique_id.startswith("model.") and node.status in BUILT_STATUSES
    ]


def production_settings(warehouse: str | None) -> Settings:
    """The production environment of ``warehouse`` (no schema prefix), whatever ``ELT_ENV`` says."""
    with environment({"ELT_SCHEMA_PREFIX": ""}):
        return load_settings(warehouse)


def production_manifest(production: Settings) -> dict[str, Any]:
    manifest = last_manifest(production)
    if manifest is None:
        raise ConfigError(
            f"no production build in the {production.warehouse.name} warehouse yet: "
            "run `elt run` (or `make demo`) once, then build changes beside it"
        )
    return manifest


def deferral_manifest(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """Production's manifest with every mart at the published schema instead of the audit one."""
    deferral = copy.deepcopy(dict(manifest))
    for node in deferral.get("nodes", {}).values():
        schema = node.get("schema") or ""
        if node.get("resource_type") == "model" and schema.endswith(AUDIT_SUFFIX):
            published = schema.removesuffix(AUDIT_SUFFIX) + PUBLISHED_SUFFIX
            node["schema"] = published
            if node.get("relation_name"):
                node["relation_name"] = node["relation_name"].replace(schema, published)
    return deferral


def scratch_schemas(project: ParsedProject, prefix: str, settings: Settings) -> list[str]:
    """Every schema a build of this project can write under ``prefix``."""
    written = {
        node["schema"]
        for node in project.contents.get("nodes", {}).values()
        if node.get("resource_type") in ("model", "snapshot", "seed")
    }
    return sorted({settings.dbt_schema, *written} - {""}) if prefix else []


@contextmanager
def changes_built(
    checkout: Checkout,
    prefix: str,
    kind: str,
    warehouse: str | None = None,
    base: Mapping[str, Any] | None = None,
    *,
    drop: bool,
) -> Iterator[ChangeBuild]:
    """Build ``state:modified+`` of ``checkout`` under ``prefix``, run the built marts'
    contracts, and hand over the result; with ``drop`` the schemas are dropped on the way out,
    whatever happened.

    ``base`` is the comparison base (default: production's latest build manifest).
    """
    production = production_settings(warehouse)
    prod_manifest = production_manifest(production)
    deferral = deferral_manifest(prod_manifest)
    folder = checkout.artifacts(kind)
    with _scratch_environment(prefix, production, warehouse) as settings:
        project = parse_project(project_dir=checkout.transform, target_path=folder / "target", quiet=True)
        schemas = scratch_schemas(project, prefix, settings)
        # what an earlier build left (a model since reverted, a stand-in view) must not linger
        _drop_schemas(settings, schemas)
        register_scratch(production, prefix, kind, schemas)
        try:
            state = write_manifest(base if base is not None else prod_manifest, folder / "base")
            defer_state = write_manifest(deferral, folder / "production")
            arguments = [
                *("--select", "state:modified+"),
                *("--exclude", "resource_type:snapshot,state:unmodified"),
                *("--state", str(state), "--defer", "--defer-state", str(defer_state), "--favor-state"),
                "--full-refresh",
                *("--log-level", "warn"),  # the summary follows; dbt's full log is in the artifacts
            ]
            try:
                summary: DbtBuildSummary | None = run_dbt_build(
                    arguments,
                    project_dir=checkout.transform,
                    target_path=folder / "target",
                    log_path=folder / "logs",
                    manifest=project.manifest,
                )
            except DbtBuildError as exc:
                summary = exc.summary
            built = built_models(summary)
            _stand_in_for_unbuilt_marts(settings, project.contents, deferral, built)
            contracts = _contracts_of_built_marts(settings, built, project.graph, checkout)
            yield ChangeBuild(
                prefix, settings, production, summary, project.contents, deferral, contracts, schemas
            )
        finally:
            if drop:
                drop_scratch(production, settings, schemas, prefix, kind)


@contextmanager
def _scratch_environment(prefix: str, production: Settings, warehouse: str | None) -> Iterator[Settings]:
    """Settings and tool environment writing under ``prefix``, reading sources from production."""
    values = {"ELT_SCHEMA_PREFIX": prefix, SOURCE_PREFIX_VARIABLE: production.schema_prefix}
    with environment(values):
        settings = load_settings(warehouse)
        with environment(settings.tool_environment() | {SOURCE_PREFIX_VARIABLE: production.schema_prefix}):
            yield settings


def _stand_in_for_unbuilt_marts(
    settings: Settings, manifest: Mapping[str, Any], deferral: Mapping[str, Any], built: list[str]
) -> None:
    """Views of production's published marts for the marts this build did not make, in the
    scratch audit schema: a contract that reads another mart then reads production's."""
    marts = {
        uid: node
        for uid, node in manifest.get("nodes", {}).items()
        if node.get("resource_type") == "model" and node.get("schema", "").endswith(AUDIT_SUFFIX)
    }
    if not set(built) & set(marts):
        return  # no scratch audit schema, and no mart contract to run
    published = deferral.get("nodes", {})
    with catalog_pipeline(settings, settings.dbt_schema).sql_client() as client:
        for uid, node in marts.items():
            if uid not in built and uid in published:
                source = published[uid]["relation_name"]
                client.execute_sql(
                    f"create or replace view {node['relation_name']} as select * from {source}"
                )


def _contracts_of_built_marts(
    settings: Settings, built: list[str], graph: DbtGraph, checkout: Checkout
) -> list[ContractResult]:
    """The contracts of the marts this build made, against the scratch audit schema; a built
    mart without a contract fails, as it would in production."""
    marts = [node.name for node in graph.marts(built)]
    if not marts:
        return []
    paths, missing = contracts_of(marts, contract_paths("marts", checkout.checks), checkout.checks / "marts")
    variables = {"MARTS_SCHEMA": f"{settings.dbt_schema}{AUDIT_SUFFIX}"}
    return (
        verify_contracts(paths, settings.soda_datasource, variables, ContractTarget.for_settings(settings))
        + missing
    )


def register_scratch(production: Settings, prefix: str, kind: str, schemas: list[str]) -> None:
    """Note the schemas a build is about to write, before it writes them: a CI job killed
    mid-build leaves schemas that ``elt ci cleanup`` still finds."""
    _note(production, prefix, kind, schemas, "built")


def drop_scratch(
    production: Settings, settings: Settings, schemas: list[str], prefix: str, kind: str
) -> None:
    """Drop ``schemas`` (``settings``' warehouse) and note that they are gone."""
    _drop_schemas(settings, schemas)
    _note(production, prefix, kind, schemas, "dropped")


def _drop_schemas(settings: Settings, schemas: list[str]) -> None:
    if not schemas:
        return
    with catalog_pipeline(settings, schemas[0]).sql_client() as client:
        for schema in schemas:
            client.execute_sql(settings.warehouse.drop_schema_sql(settings, schema))


def _note(production: Settings, prefix: str, kind: str, schemas: list[str], event: str) -> None:
    at = now()
    records = [ScratchSchema(prefix, kind, schema, event, at) for schema in schemas]
    record(production, SCRATCH_TABLE, records, SCRATCH_DATASET)


def stale_scratch(
    production: Settings, older_than: timedelta, kinds: tuple[str, ...]
) -> dict[tuple[str, str], list[str]]:
    """Schemas of ``kinds`` whose last build is older than ``older_than`` and that were not
    dropped since, by (prefix, kind)."""
    rows = query_audit(
        production,
        SCRATCH_TABLE,
        "select t.prefix, t.kind, t.schema_name, t.event, t.recorded_at from {table} as t join ("
        "select schema_name, max(recorded_at) as latest from {table} group by schema_name"
        ") as l on t.schema_name = l.schema_name and t.recorded_at = l.latest",
        SCRATCH_DATASET,
    )
    cutoff = now() - older_than
    stale: dict[tuple[str, str], list[str]] = {}
    for prefix, kind, schema, event, recorded_at in rows:
        if kind in kinds and event == "built" and utc(recorded_at) < cutoff:
            stale.setdefault((prefix, kind), []).append(schema)
    return stale


def base_manifest_at(checkout: Checkout, ref: str) -> dict[str, Any]:
    """The manifest of the dbt project as it is at git ``ref`` (``elt ci``'s comparison base)."""
    with tempfile.TemporaryDirectory(prefix="elt-ci-base-") as folder:
        tree = _git(checkout, "archive", "--format=tar", ref, "transform", text=False)
        with tarfile.open(fileobj=io.BytesIO(tree)) as archive:
            archive.extractall(folder, filter="data")
        project = parse_project(
            project_dir=Path(folder) / "transform", target_path=Path(folder) / "target", quiet=True
        )
    return project.contents


def ci_prefix(checkout: Checkout) -> str:
    """``ci_<short commit>_``: one pull request's build, apart from every other."""
    return f"ci_{_git(checkout, 'rev-parse', '--short=8', 'HEAD').strip()}_"


def _git(checkout: Checkout, *arguments: str, text: bool = True) -> Any:
    try:
        return subprocess.run(
            ["git", "-C", str(checkout.root), *arguments], check=True, capture_output=True, text=text
        ).stdout
    except subprocess.CalledProcessError as exc:
        error = exc.stderr if text else exc.stderr.decode(errors="replace")
        raise ConfigError(f"git {' '.join(arguments)} failed in {checkout.root}: {error.strip()}") from exc


def parse_age(text: str) -> timedelta:
    """``7d``, ``12h``, ``30m`` as a duration (the sources' duration syntax)."""
    try:
        return parse_duration(text)
    except ValueError:
        raise ConfigError(f"--older-than {text!r}: write a number and d, h or m, like 7d") from None


def drop_stale_scratch(warehouse: str | None, older_than: timedelta, kinds: tuple[str, ...]) -> list[str]:
    """Drop the scratch schemas of ``kinds`` last built longer than ``older_than`` ago."""
    production = production_settings(warehouse)
    dropped: list[str] = []
    for (prefix, kind), schemas in sorted(stale_scratch(production, older_than, kinds).items()):
        with environment({"ELT_SCHEMA_PREFIX": prefix}):
            settings = load_settings(warehouse)
        drop_scratch(production, settings, sorted(schemas), prefix, kind)
        dropped += sorted(schemas)
    return dropped
