"""The build stage of every run that makes marts: plan → dbt build → mart contracts → publish.

Used by the full run, ``--source`` runs and backfills, each under the one build lock
(flows/build_lock.py). The plan (flows/dbt_graph.py) comes from the state the last builds
left in the warehouse (flows/build_state.py): only the nodes whose inputs or code changed,
or that are still pending, are built; nodes reading a never-loaded source wait.

Write-audit-publish per mart: dbt builds marts into ``<schema>_marts_audit``; the
contracts of the marts this build made check them there; each mart that passed, and has no
failed mart upstream, is copied to ``<schema>_marts`` (transform/macros/publish_marts.sql).
A mart that failed stays in the audit schema, a copy goes to ``<schema>_marts_quarantine``,
and it is recorded as pending, so no later build publishes it without rebuilding and
checking it again. A mart no build touched keeps its published version as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from prefect import get_run_logger
from prefect.runtime import flow_run

from dlt_sources.registry import SOURCES
from flows.audit import now
from flows.build_lock import build_lock
from flows.build_state import (
    CONTRACT_FAILED,
    NOT_PUBLISHED,
    Load,
    last_manifest,
    loaded_tables,
    pending_nodes,
    record_build,
    unconsumed_loads,
)
from flows.checks import ContractsFailed
from flows.config import Settings
from flows.dbt_graph import BuildPlan, Changes, SourceTable, plan_build
from flows.gates import gate, run_id
from flows.lineage import current as current_lineage
from flows.pii import DATASET as PII_DATASET
from flows.pii import TABLE as PII_TABLE
from flows.pii import ensure_pii_salt
from flows.pipelines import raw_dataset
from flows.report import RunSummary
from flows.transform import (
    DbtBuildError,
    DbtInvocationError,
    ParsedProject,
    last_run_results,
    modified_since,
    parse_project,
    run_dbt_build,
    run_dbt_operation,
)


@dataclass(frozen=True)
class Build:
    """One build's plan and what it was drawn from."""

    project: ParsedProject
    plan: BuildPlan
    # nodes whose code changed since the last build (None: no earlier build to compare with)
    modified: frozenset[str] | None
    # the loads this build takes in (those of its scope)
    taken: list[Load]

    def dbt_args(self) -> list[str]:
        return ["--select", *self.plan.selectors(self.project.graph), "--indirect-selection", "buildable"]


def plan(
    settings: Settings,
    sources: Sequence[str] | None = None,
    *,
    full_build: bool = False,
    new_salt: bool = False,
) -> Build:
    """Parse the project and plan the build from the warehouse's state.

    ``new_salt``: the PII salt was just written, so everything that hashes with it is
    built again, like the readers of a source whose definition changed.
    """
    project = parse_project()
    graph = project.graph
    modified = modified_since(project, last_manifest(settings))
    if modified is not None:
        # a changed source counts as changed code of the nodes reading it, so that those out
        # of this run's scope are recorded as still to build
        salt = SourceTable(settings.dataset(PII_DATASET).lower(), PII_TABLE)
        changed = (modified & graph.sources.keys()) | (graph.readers_of([salt]) if new_salt else set())
        modified |= {reader for source in changed for reader in graph.children.get(source, ())}
    loads = unconsumed_loads(settings)
    scope = None if sources is None else [raw_dataset(source, settings) for source in sources]
    # a source table exists once a load brought it rows; tables no source of ours loads
    # (the PII salt, which the flow keeps) are taken to exist
    raw = {raw_dataset(source, settings).lower() for source in SOURCES}
    kept = {table for table in graph.sources.values() if table.schema not in raw}
    changes = Changes(
        loaded=frozenset(load.table for load in loads),
        modified=modified,
        pending=pending_nodes(settings),
        existing=loaded_tables(settings) | kept,
    )
    drawn = plan_build(graph, changes, scope=scope, full_build=full_build)
    taken = [load for load in loads if scope is None or load.table.schema in scope]
    return Build(project, drawn, modified, taken)


def build_and_publish(
    summary: RunSummary,
    settings: Settings,
    sources: Sequence[str] | None = None,
    *,
    full_build: bool = False,
) -> None:
    """Plan, build, gate and publish the marts, each a stage of ``summary``, under the build lock.

    ``sources`` limits the build to what those sources feed (``elt run --source``, a backfill).
    """
    with build_lock():
        broken: DbtBuildError | None = None
        try:
            with summary.stage("dbt build"):
                salt = ensure_pii_salt(settings)
                get_run_logger().info("PII salt %s", salt)
                build = plan(settings, sources, full_build=full_build, new_salt=salt.written)
                graph = build.project.graph
                summary.build_plan = [build.plan.describe(graph), *build.plan.waiting_lines(graph)]
                get_run_logger().info("\n".join(summary.build_plan))
                if not build.plan.empty:
                    try:
                        summary.dbt = run_dbt_build(build.dbt_args(), manifest=build.project.manifest)
                    except DbtBuildError as exc:
                        summary.dbt = exc.summary
                        raise
                    finally:
                        if (lineage := current_lineage()) is not None:
                            lineage.dbt_build(last_run_results(), build.project.contents)
        except DbtBuildError as exc:
            broken = exc  # what dbt did build, apart from the failure, is still checked and published
        failed, held_back = _gate_and_publish(summary, settings, build)
        _record(settings, build, summary, held_back)
        if broken is not None:
            raise broken
        if failed is not None:
            raise failed


def _gate_and_publish(
    summary: RunSummary, settings: Settings, build: Build
) -> tuple[ContractsFailed | None, dict[str, str]]:
    """Check the marts this build made and publish those that passed; the contracts' failure,
    if any, and the marts held back."""
    marts = build.project.graph.marts(summary.dbt.built if summary.dbt else ())
    failed: ContractsFailed | None = None
    if marts:
        try:
            with summary.stage("mart contracts"):
                gate(summary, "marts", settings, tables=[mart.name for mart in marts])
        except ContractsFailed as exc:
            failed = exc
            _quarantine(exc, build)
    held_back = _held_back(build, failed)
    publishable = [mart.name for mart in marts if mart.unique_id not in held_back]
    if publishable:
        started = now()
        with summary.stage("publish"):
            run_dbt_operation("publish_marts", {"tables": publishable}, manifest=build.project.manifest)
        summary.published = publishable
        if (lineage := current_lineage()) is not None:
            schema = settings.dbt_schema
            lineage.publish(publishable, f"{schema}_marts_audit", f"{schema}_marts", started)
    return failed, held_back


def _held_back(build: Build, failed: ContractsFailed | None) -> dict[str, str]:
    """Built marts not to publish, and why: their contract failed, or a mart upstream's did."""
    if failed is None:
        return {}
    graph = build.project.graph
    marts = graph.marts(uid for uid in build.plan.selected)
    failing_tables = set(failed.failed_tables)
    failing = {mart.unique_id for mart in marts if mart.name in failing_tables or not failed.results}
    downstream = graph.descendants(failing) - failing
    return {uid: CONTRACT_FAILED for uid in failing} | {
        mart.unique_id: NOT_PUBLISHED for mart in marts if mart.unique_id in downstream
    }


def _record(settings: Settings, build: Build, summary: RunSummary, unpublished: dict[str, str]) -> None:
    if build.plan.empty and not build.taken and build.modified == frozenset():
        return  # nothing built, taken in or changed: the stored state is still the truth
    record_build(
        settings,
        run_id(),
        graph=build.project.graph,
        plan=build.plan,
        # without an earlier build everything is new: what this one did not reach stays to do
        modified=build.project.graph.nodes if build.modified is None else build.modified,
        dbt=summary.dbt,
        unpublished=unpublished,
        published=summary.published,
        taken=build.taken,
        manifest=build.project.contents,
    )


def _quarantine(failed: ContractsFailed, build: Build) -> None:
    """Keep the audited tables that failed a contract, named after this flow run, for inspection."""
    tables = failed.failed_tables
    if not tables:
        return
    suffix = (flow_run.get_id() or "manual").replace("-", "_")
    try:
        arguments = {"tables": tables, "run_id": suffix}
        run_dbt_operation("quarantine_marts", arguments, manifest=build.project.manifest)
    except DbtInvocationError as exc:  # e.g. a contract naming a table that was never built
        get_run_logger().warning("could not keep the failing marts for inspection: %s", exc)
