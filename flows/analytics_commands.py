"""The analytics engineer's commands: ``elt dev`` and ``elt ci`` (a change built beside
production, flows/slim_build.py, checked by its contracts and diffed against production,
flows/change_report.py) and ``elt docs`` (flows/docs.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from flows.config import PROJECT_DIR, ConfigError, apply_runtime_environment
from flows.data_diff import diff_lines
from flows.terminal import WarehouseOption, console, errors
from flows.terminal import fail as _fail

if TYPE_CHECKING:
    from flows.change_report import ChangeReport

RepoOption = Annotated[
    Path,
    typer.Option("--repo", help="The checkout whose transform/ and checks/ to build; default: this one."),
]


def dev(warehouse: WarehouseOption = None, repo: RepoOption = PROJECT_DIR) -> None:
    """Build what you changed in transform/ into your dev schemas, reading the rest from production.

    Builds state:modified+ (compared with production's latest build) into
    dev_<you>_* (ELT_DEVELOPER, else your login), runs the changed marts' contracts there
    and shows what the change does to the data. Production is only read.
    """
    apply_runtime_environment()
    from flows.change_report import report_changes
    from flows.config import developer_prefix
    from flows.slim_build import Checkout, changes_built

    try:
        with changes_built(Checkout(repo), developer_prefix(), "dev", warehouse, drop=False) as build:
            report = report_changes(build, "production")
    except ConfigError as exc:
        _fail(str(exc))
    _print_report(report.built_names(), report)


def _print_report(built: list[str], report: ChangeReport) -> None:
    """The console's view of a change report: built models, contracts, diff, verdict."""
    prefix = report.build.prefix
    console.print(
        f"built {len(built)} models into {prefix}*: {', '.join(built) or 'nothing changed'}", highlight=False
    )
    for result in report.build.contracts:
        if result.passed:
            console.print(escape(result.summary()), highlight=False, soft_wrap=True)
    for line in diff_lines(report.diffs):
        console.print(escape(line), highlight=False, soft_wrap=True)
    for line in report.failures():
        errors.print(escape(line), highlight=False, soft_wrap=True)
    if not report.ok:
        raise typer.Exit(1)


ci = typer.Typer(help="Slim CI for a pull request: build what changed beside production, diff it, drop it.")


@ci.callback(invoke_without_command=True)
def ci_build(
    ctx: typer.Context,
    base: Annotated[
        str | None, typer.Option("--base", help="The git ref to compare with (the PR's base).")
    ] = None,
    warehouse: WarehouseOption = None,
    repo: RepoOption = PROJECT_DIR,
    out: Annotated[Path | None, typer.Option("--out", help="Folder for ci_report.md and .json.")] = None,
    max_changed_percent: Annotated[
        float | None,
        typer.Option(
            "--max-changed-percent",
            envvar="ELT_CI_MAX_CHANGED_PERCENT",
            help="Fail when a model's rows added+removed+changed exceed this share of production's.",
        ),
    ] = None,
) -> None:
    """`elt ci --base REF`: build state:modified+ (compared with REF) in ci_<commit>_*, deferring
    to production; run the changed marts' contracts; diff every built model against
    production (Markdown for a pull-request comment, and JSON); drop the schemas. Exit
    code 1 when a node or contract fails or a diff crosses --max-changed-percent."""
    if ctx.invoked_subcommand is not None:
        return
    if base is None:
        _fail("elt ci needs --base REF: the git ref the pull request is compared with (e.g. origin/main)")
    apply_runtime_environment()
    from flows.change_report import report_changes
    from flows.slim_build import Checkout, base_manifest_at, changes_built, ci_prefix

    checkout = Checkout(repo)
    try:
        manifest = base_manifest_at(checkout, base)
        with changes_built(checkout, ci_prefix(checkout), "ci", warehouse, manifest, drop=True) as build:
            report = report_changes(build, base, max_changed_percent)
    except ConfigError as exc:
        _fail(str(exc))
    folder = out or checkout.artifacts("ci")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ci_report.md").write_text(report.markdown(), encoding="utf-8")
    (folder / "ci_report.json").write_text(json.dumps(report.as_json(), indent=2), encoding="utf-8")
    console.print(f"report: {folder / 'ci_report.md'} and ci_report.json", highlight=False, soft_wrap=True)
    _print_report(report.built_names(), report)


@ci.command("cleanup")
def ci_cleanup(
    older_than: Annotated[str, typer.Option("--older-than", help="Age like 7d, 12h or 30m.")] = "7d",
    include_dev: Annotated[
        bool, typer.Option("--dev", help="Also developers' schemas from elt dev.")
    ] = False,
    warehouse: WarehouseOption = None,
) -> None:
    """Drop CI schemas a killed job left behind (and old dev schemas, with --dev)."""
    apply_runtime_environment()
    from flows.slim_build import drop_stale_scratch, parse_age

    try:
        dropped = drop_stale_scratch(
            warehouse, parse_age(older_than), ("ci", "dev") if include_dev else ("ci",)
        )
    except ConfigError as exc:
        _fail(str(exc))
    for schema in dropped:
        console.print(f"dropped {schema}", highlight=False)
    console.print(f"{len(dropped)} schemas dropped", highlight=False)


def docs(
    warehouse: WarehouseOption = None,
    port: Annotated[int, typer.Option("--port", help="Port on 127.0.0.1; 0 picks a free one.")] = 8080,
    serve: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Serve the site after generating it.")
    ] = True,
) -> None:
    """dbt docs with the dlt sources described and each table's Soda contract linked, on 127.0.0.1."""
    apply_runtime_environment()
    from flows.config import load_settings
    from flows.docs import DOCS_FOLDER, generate_docs
    from flows.docs import serve as serve_docs

    try:
        folder = generate_docs(load_settings(warehouse), DOCS_FOLDER)
    except ConfigError as exc:
        _fail(str(exc))
    console.print(f"docs generated in {folder}", highlight=False, soft_wrap=True)
    if not serve:
        return
    server = serve_docs(folder, port)
    console.print(f"serving on http://127.0.0.1:{server.server_address[1]}/ (Ctrl-C stops)", highlight=False)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
