"""Run the dbt project in ``transform/`` from Prefect and summarise what it did.

dbt runs once per build, in this process (``dbtRunner``); inside a flow each node shows
in Prefect as a task run recorded from dbt's events (flows/dbt_nodes.py says why not
prefect-dbt's task per node). dbt's warnings and errors go to the run's log, the rest to
dbt's own log file. Turning ``run_results.json`` into a :class:`DbtBuildSummary` is
plain Python so it can be tested without Prefect or a warehouse.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.context import FlowRunContext

from flows import progress
from flows.build_state import write_manifest
from flows.config import TRANSFORM_DIR
from flows.dbt_graph import DbtGraph
from flows.dbt_nodes import NodeTaskRuns
from flows.results import DbtBuildSummary, NodeResult


class DbtBuildError(RuntimeError):
    """dbt finished but some nodes failed; carries the summary for callers."""

    def __init__(self, summary: DbtBuildSummary) -> None:
        super().__init__(summary.failure_message())
        self.summary = summary


class DbtInvocationError(RuntimeError):
    """dbt could not run at all (parse/compile/connection error), so no summary exists."""


def _execute_timing(raw: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """Start/end of the node's execute phase, falling back to its compile phase."""
    timings = {t.get("name"): t for t in raw.get("timing") or []}
    phase = timings.get("execute") or timings.get("compile") or {}
    return phase.get("started_at"), phase.get("completed_at")


def summarize_run_results(run_results: Mapping[str, Any]) -> DbtBuildSummary:
    """Build a summary from the parsed contents of dbt's run_results.json."""
    nodes: list[NodeResult] = []
    for raw in run_results.get("results") or []:
        started_at, completed_at = _execute_timing(raw)
        nodes.append(
            NodeResult(
                unique_id=str(raw["unique_id"]),
                status=str(raw.get("status") or "").lower(),
                execution_time=float(raw.get("execution_time") or 0.0),
                message=raw.get("message"),
                started_at=started_at,
                completed_at=completed_at,
            )
        )
    metadata = run_results.get("metadata") or {}
    args = run_results.get("args") or {}
    return DbtBuildSummary(
        nodes=tuple(nodes),
        elapsed_seconds=float(run_results.get("elapsed_time") or 0.0),
        invocation_id=metadata.get("invocation_id"),
        command=args.get("which"),
    )


def last_run_results(project_dir: Path = TRANSFORM_DIR) -> dict[str, Any]:
    """The last build's ``run_results.json`` as dbt wrote it (each node's compiled SQL
    included: the lineage reads it); empty when there is none."""
    path = project_dir / _target_folder(None) / "run_results.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def load_run_results(path: Path) -> DbtBuildSummary:
    """Read a run_results.json file and summarise it."""
    return summarize_run_results(json.loads(path.read_text(encoding="utf-8")))


def release_duckdb_connection() -> None:
    """Close the DuckDB database dbt-duckdb keeps open for the life of the process.

    dbt-duckdb caches one connection in a class attribute and only drops it at
    exit, so anything else in the same process (Soda checks, tests, a second dbt
    target) that opens the file with another configuration, e.g. read_only=True,
    gets "Can't open a connection to same database file with a different
    configuration". Safe to call when dbt-duckdb is not installed or unused.
    """
    try:
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    except ImportError:
        return
    with DuckDBConnectionManager._LOCK:
        env = DuckDBConnectionManager._ENV
        DuckDBConnectionManager._ENV = None
    if env is not None:
        env.close()


@dataclass(frozen=True)
class ParsedProject:
    """The dbt project parsed once per run: later invocations reuse dbt's manifest object."""

    manifest: Any  # dbt's Manifest; handed to dbtRunner so build and ls skip parsing
    contents: dict[str, Any]  # the manifest as JSON, what gets stored and compared
    graph: DbtGraph


def parse_project(
    *,
    target: str | None = None,
    target_path: Path | None = None,
    project_dir: Path = TRANSFORM_DIR,
    quiet: bool = False,
) -> ParsedProject:
    """``dbt parse``: the manifest of the project as it is now, with the target's settings
    (``quiet``: only dbt's warnings and errors reach the console)."""
    artifacts = project_dir / _target_folder(target_path)
    options = _options(target_path, project_dir) | ({"log-level": "warn"} if quiet else {})
    result = _invoke(["parse"], target, options)
    if not result.success:
        raise DbtInvocationError(f"dbt parse failed: {result.exception or 'see dbt errors above'}")
    contents = json.loads((artifacts / "manifest.json").read_text(encoding="utf-8"))
    parsed = ParsedProject(result.result, contents, DbtGraph.from_manifest(contents))
    _LAST_PARSED[:] = [parsed]
    return parsed


def last_parsed() -> ParsedProject | None:
    """The project as this process last parsed it (the run's own build), if it did."""
    return _LAST_PARSED[0] if _LAST_PARSED else None


_LAST_PARSED: list[ParsedProject] = []


def modified_since(
    project: ParsedProject, base: Mapping[str, Any] | None, *, target: str | None = None
) -> frozenset[str] | None:
    """Nodes and sources whose code differs from ``base`` (dbt's ``state:modified``).

    None (everything counts as changed) without a base, or when the base was written by
    another dbt version: dbt's comparison is only defined within one.
    """
    base_version = (base or {}).get("metadata", {}).get("dbt_version")
    if base is None or base_version != project.contents["metadata"].get("dbt_version"):
        return None
    with tempfile.TemporaryDirectory(prefix="elt-state-") as folder:
        state = write_manifest(base, Path(folder))
        command = ["ls", "--select", "state:modified", "--state", str(state), "--output", "json"]
        # the list is the result, not output; "no node matches" is a normal answer, not a warning
        options = _options(None) | {"log-level": "none"}
        result = _invoke(
            [*command, "--output-keys", "unique_id"], target, options, manifest=project.manifest, quiet=True
        )
    if not result.success:
        raise DbtInvocationError(f"dbt ls --select state:modified failed: {result.exception}")
    return frozenset(json.loads(line)["unique_id"] for line in result.result or ())


def run_dbt_build(
    extra_args: Sequence[str] = (),
    *,
    target: str | None = None,
    project_dir: Path = TRANSFORM_DIR,
    profiles_dir: Path | None = None,
    target_path: Path | None = None,
    log_path: Path | None = None,
    manifest: Any = None,
) -> DbtBuildSummary:
    """Run ``dbt build`` once and return a summary.

    Inside a Prefect flow each dbt node is recorded as a task run of that flow; outside a
    flow it is a plain dbt run. ``extra_args`` go straight to dbt (for example
    ``["--select", "marts"]``); pass artifact locations as ``target_path`` /
    ``log_path`` rather than dbt flags so the summary is read from the right
    place (``DBT_TARGET_PATH`` / ``DBT_LOG_PATH`` env vars also work). ``manifest``
    (from :func:`parse_project`) spares dbt a second parse.

    Raises :class:`DbtBuildError` naming the failed nodes when any node fails,
    and :class:`DbtInvocationError` when dbt cannot run at all.
    """
    project_dir = Path(project_dir)
    artifacts = _target_folder(target_path)
    run_results_path = project_dir / artifacts / "run_results.json"  # an absolute artifacts path wins
    # A stale file from an earlier run must never be mistaken for this run's results.
    run_results_path.unlink(missing_ok=True)
    options = _options(target_path, project_dir, profiles_dir)
    if log_path is not None:
        options["log-path"] = str(log_path)
    result = _invoke(["build", *extra_args], target, options, manifest=manifest)
    if not run_results_path.exists():
        raise DbtInvocationError(
            f"dbt build produced no run_results.json at {run_results_path}"
            + (f": {result.exception}" if result.exception else "")
        )
    summary = load_run_results(run_results_path)
    if not summary.success:
        raise DbtBuildError(summary)
    return summary


def run_dbt_operation(
    macro: str, args: Mapping[str, Any] | None = None, *, target: str | None = None, manifest: Any = None
) -> None:
    """``dbt run-operation MACRO --args ARGS`` (publishing and quarantining marts).

    Its artifacts go to ``<target folder>/operations``, so ``run_results.json`` in the
    target folder stays the last build's. ``manifest`` (from :func:`parse_project`)
    spares dbt a parse. Raises :class:`DbtInvocationError` with dbt's message when the
    macro fails.
    """
    command = ["run-operation", macro]
    if args:
        command += ["--args", json.dumps(dict(args))]
    artifacts = _target_folder(None) / "operations"
    result = _invoke(command, target, _options(artifacts), manifest=manifest)
    if not result.success:
        reason = result.exception or "see dbt's errors above"
        raise DbtInvocationError(f"dbt run-operation {macro} failed: {reason}")


def generate_dbt_docs(target_path: Path) -> None:
    """``dbt docs generate``: the site, the manifest and the warehouse's catalog, into ``target_path``."""
    result = _invoke(["docs", "generate"], None, _options(target_path) | {"log-level": "warn"})
    if not result.success:
        raise DbtInvocationError(f"dbt docs generate failed: {result.exception or 'see dbt errors above'}")


def _target_folder(target_path: Path | None) -> Path:
    """dbt's target folder: the one given, else ``DBT_TARGET_PATH``, else ``target`` (relative
    paths are under the project folder, as dbt reads them)."""
    return Path(target_path or os.environ.get("DBT_TARGET_PATH") or "target")


def _options(
    target_path: Path | None, project_dir: Path = TRANSFORM_DIR, profiles_dir: Path | None = None
) -> dict[str, str]:
    options = {"project-dir": str(project_dir), "profiles-dir": str(profiles_dir or project_dir)}
    if target_path is not None:
        options["target-path"] = str(target_path)
    return options


def _invoke(
    command: list[str],
    target: str | None,
    options: Mapping[str, str],
    manifest: Any = None,
    *,
    quiet: bool = False,
) -> Any:
    """One in-process dbt invocation; ``options`` are dbt flags without their dashes.

    Inside a flow the nodes are recorded as task runs and only dbt's warnings and errors
    reach the run's log (the rest is in dbt's log file; ``quiet``: none of it); outside one
    dbt prints as it does on the command line.
    """
    # Imported lazily: dbt-core costs ~1 s to import, which commands that never run dbt skip.
    from dbt.cli.main import dbtRunner

    _spare_dbt_the_stack_walk()

    callbacks: list[Callable[[Any], None]] = [progress.dbt_event] if progress.active() else []
    if FlowRunContext.get() is not None:
        if (recorder := NodeTaskRuns.for_current_flow_run()) is not None:
            callbacks.append(recorder)
        if not quiet:
            callbacks.append(_log_problems(get_run_logger()))
        options = {**options, "log-level": "none", "log-level-file": "info"}
    try:
        runner = dbtRunner(manifest=manifest, callbacks=callbacks)
        flags = [part for name, value in options.items() for part in (f"--{name}", value)]
        # No --target unless asked: the profile picks ELT_DBT_TARGET (flows/config.py exports it),
        # and dbt keys its partial parse on the command line's target, so a run, `elt dbt` and
        # plain `dbt` in transform/ all reuse one parse instead of each starting afresh.
        chosen = ["--target", target] if target else []
        return runner.invoke([*command, *chosen, *flags])
    finally:
        release_duckdb_connection()


def _spare_dbt_the_stack_walk() -> None:
    """Make dbt-common's behavior flags name their adapter without ``inspect.stack()``.

    Why: each dbt invocation registers its adapter, whose behavior flags each call
    ``BehaviorFlagRendered._default_source``; that calls ``inspect.stack()``, which reads
    the source lines of every frame on the stack. Under a Prefect flow (and pytest) the
    stack is deep, and it cost ~0.2 s per invocation, 23 s of a test session. Walking the
    frames' module names gives the same answer (the first module that is not
    dbt-common's) without touching a file.
    """
    from dbt_common import behavior_flags

    def calling_module() -> str:
        frame = sys._getframe(1)
        while frame is not None:
            name = frame.f_globals.get("__name__")
            if name and name != behavior_flags.__name__:
                return str(name)
            frame = frame.f_back  # type: ignore[assignment]
        return "Unknown"

    behavior_flags.BehaviorFlagRendered._default_source = staticmethod(calling_module)  # type: ignore[method-assign]


def _log_problems(logger: logging.LoggerAdapter[logging.Logger]) -> Callable[[Any], None]:
    """A dbt callback passing dbt's warnings and errors on to the flow run's log."""

    def forward(message: Any) -> None:
        level = message.info.level
        if level in ("warn", "error") and message.info.msg:
            logger.log(logging.WARNING if level == "warn" else logging.ERROR, "dbt: %s", message.info.msg)

    return forward


@flow(name="dbt-build")
def dbt_build(
    extra_args: list[str] | None = None,
    target: str | None = None,
) -> DbtBuildSummary:
    """Prefect subflow around :func:`run_dbt_build`, grouping the nodes' task runs."""
    logger = get_run_logger()
    summary = run_dbt_build(extra_args or (), target=target)
    logger.info(summary.describe())
    return summary
