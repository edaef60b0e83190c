"""The ``elt`` command: run the ELT flow, or the demo on local stand-ins.

Settings are validated before Prefect starts, so a typo in a setting costs a
second, not a server start. Every error a person must act on is printed as one
line naming the setting or source (never a secret), with exit code 1.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from contextlib import ExitStack
from datetime import datetime
from typing import Annotated

import typer

from dlt_sources.errors import SourceError
from flows import analytics_commands, observability_commands
from flows.config import ConfigError, apply_runtime_environment, data_dir, load_settings
from flows.operations import AuditedCommands
from flows.privacy.command import privacy
from flows.terminal import WarehouseOption, console, run_logs_in_file
from flows.terminal import fail as _fail
from flows.warehouses import DEFAULT_WAREHOUSE, WAREHOUSES, warehouse_named

app = typer.Typer(
    cls=AuditedCommands, help="ELT platform: dlt sources → warehouse → dbt → Soda contracts, run by Prefect."
)
SourceOption = Annotated[
    list[str] | None,
    typer.Option("--source", "-s", help="Load only this source (repeatable); default: all sources."),
]


VerboseOption = Annotated[
    bool,
    typer.Option("--verbose", "-v", help="Print Prefect's and dbt's log lines instead of the live view."),
]


def _run_flow(
    sources: list[str] | None, warehouse: str | None, full_build: bool = False, verbose: bool = False
) -> None:
    """Validate the settings, run the flow with its live view, print its report; exit 1 on any failure."""
    try:
        load_settings(warehouse)
    except ConfigError as exc:
        _fail(str(exc))
    from dlt_sources.registry import SOURCES
    from flows.ingest import unknown_sources

    unknown = unknown_sources(sources or [])
    if unknown:
        _fail(f"unknown source(s) {', '.join(unknown)} (--source); the sources are {', '.join(SOURCES)}")

    from flows.elt import EltRunFailed, elt
    from flows.ingest import source_error_in
    from flows.progress import live_view

    started = time.perf_counter()
    with ExitStack() as shown:
        if not verbose:
            log_file = shown.enter_context(run_logs_in_file(data_dir() / "logs"))
            shown.enter_context(live_view(console))
        try:
            summary = elt(sources=sources, warehouse=warehouse, full_build=full_build)
        except EltRunFailed as exc:
            shown.close()
            exc.summary.print(console)
            cause = source_error_in(exc)
            _fail(str(cause) if cause else exc.summary.error or "the ELT run failed")
        except (ConfigError, SourceError) as exc:
            shown.close()
            _fail(str(exc))
    summary.print(console)
    console.print(f"total wall time: {time.perf_counter() - started:.1f}s", highlight=False)
    if not verbose:
        console.print(f"full log: {log_file} (and the flow run in Prefect)", highlight=False, soft_wrap=True)


@app.command()
def run(
    sources: SourceOption = None,
    warehouse: WarehouseOption = None,
    full_build: Annotated[
        bool, typer.Option("--full-build", help="Rebuild every dbt node, not only what changed.")
    ] = False,
    verbose: VerboseOption = False,
) -> None:
    """Run the ELT flow: ingest → raw contracts → dbt build of what changed → mart contracts → publish."""
    _run_flow(sources, warehouse, full_build, verbose)


@app.command()
def demo(
    orders: Annotated[int, typer.Option(help="Orders in the generated shop database.")] = 100_000,
    warehouse: WarehouseOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Start the local stand-ins (PostgreSQL shop, Stripe API), run the ELT on DuckDB (or --warehouse)."""
    apply_runtime_environment()
    try:
        chosen = warehouse_named(warehouse or DEFAULT_WAREHOUSE)
    except ConfigError as exc:
        _fail(str(exc))
    from flows.config import environment
    from standins import demo_sources

    state = data_dir() / "demo"
    console.print(f"starting the demo sources (state in {state}) …")
    with demo_sources(state, n_orders=orders, recent=True) as sources:
        console.print(
            f"shop PostgreSQL on 127.0.0.1:{sources.postgres.port}, Stripe stand-in on {sources.stripe_url}, "
            f"tickets API on {sources.tickets_url}"
        )
        with environment(sources.environment() | {"ELT_WAREHOUSE": chosen.name}):
            _run_flow(None, chosen.name, verbose=verbose)


@app.command("smoke-cloud")
def smoke_cloud(
    orders: Annotated[int, typer.Option(help="Orders in the generated shop database.")] = 2_000,
) -> None:
    """Run the demo on real Snowflake and BigQuery, each only when its credentials are configured.

    Writes to schemas prefixed ``smoke_`` (or $ELT_SCHEMA_PREFIX), never to production ones.
    """
    apply_runtime_environment()
    os.environ.setdefault("ELT_SCHEMA_PREFIX", "smoke_")
    ran = []
    for name in [warehouse.name for warehouse in WAREHOUSES.values() if warehouse.in_the_cloud]:
        try:
            load_settings(name)
        except ConfigError as exc:
            console.print(f"[yellow]skipped {name}[/]: no credentials ({exc})", highlight=False)
            continue
        console.print(f"[bold]smoke test on {name}[/]")
        demo(orders=orders, warehouse=name)  # exits 1 on failure
        ran.append(name)
    verdict = f"ran on {', '.join(ran)}" if ran else "SKIPPED, no cloud credentials set"
    console.print(f"smoke-cloud: {verdict}")


@app.command()
def deploy(
    pool_limit: Annotated[
        int | None,
        typer.Option(
            help="Runs at once on the elt-process pool, 0 for no limit; "
            "default: 1 on DuckDB (one writer at a time), no limit otherwise.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Register deployments/prefect.yaml with the Prefect API in PREFECT_API_URL.

    Creates the elt-process work pool and the per-source concurrency limits first.
    """
    from flows.deploy import DeployError, default_pool_limit
    from flows.deploy import deploy as register

    try:
        limit = default_pool_limit() if pool_limit is None else (pool_limit or None)
        for line in register(limit):
            console.print(line, highlight=False, soft_wrap=True)
    except (DeployError, ConfigError) as exc:
        _fail(str(exc))


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    warehouse: WarehouseOption = None,
) -> None:
    """Per source and table: last successful load, rows, freshness against its SLA, contract, CDC lag."""
    apply_runtime_environment()
    from flows.status import collect_status, status_table

    try:
        statuses = collect_status(warehouse)
    except (ConfigError, SourceError) as exc:
        _fail(str(exc))
    if as_json:
        print(json.dumps([entry.to_json() for entry in statuses], indent=2))
    else:
        console.print(status_table(statuses))


@app.command()
def backfill(
    source: Annotated[str, typer.Option("--source", "-s", help="A SQL database source.")],
    start: Annotated[datetime, typer.Option(formats=["%Y-%m-%d"], help="First day of the window.")],
    end: Annotated[datetime, typer.Option(formats=["%Y-%m-%d"], help="Day after the window (exclusive).")],
    chunk: Annotated[str, typer.Option(help="Chunk length, checkpointed one by one: 6h, 1d, 7d.")] = "1d",
    restart: Annotated[bool, typer.Option(help="Reload chunks an earlier run already finished.")] = False,
    warehouse: WarehouseOption = None,
) -> None:
    """Reload a time window of a source in checkpointed chunks (resumable), then rebuild its marts."""
    apply_runtime_environment()
    from flows.backfill import backfill as backfill_flow
    from flows.backfill import plan
    from flows.elt import EltRunFailed

    try:
        plan(source, start.date(), end.date(), chunk)  # a typo must not start (and alert) a flow run
        summary = backfill_flow(source, start.date(), end.date(), chunk, restart, warehouse)
    except EltRunFailed as exc:
        _fail(exc.summary.error or "rebuilding the marts failed")
    except (ConfigError, SourceError) as exc:
        _fail(str(exc))
    kept_out = f"; {summary.kept_out:,} rows of forgotten people kept out" if summary.kept_out else ""
    console.print(
        f"backfill {summary.backfill_id}: {len(summary.chunks_loaded)} chunks loaded "
        f"({summary.rows:,} rows), {len(summary.chunks_skipped)} already done{kept_out}"
    )


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def dbt(ctx: typer.Context, warehouse: WarehouseOption = None) -> None:
    """Run dbt in transform/ against the chosen warehouse: `elt dbt build -s fct_orders+ -w snowflake`.

    The credentials come from the same settings as the flow's (environment,
    .dlt/secrets.toml, Prefect Secret blocks), so nothing needs exporting by hand.
    Building by hand never publishes (see the README's write-audit-publish).
    """
    apply_runtime_environment()
    try:
        load_settings(warehouse).export_tool_environment()
    except ConfigError as exc:
        _fail(str(exc))
    from dbt.cli.main import dbtRunner

    from flows.config import TRANSFORM_DIR

    arguments = list(ctx.args)
    for flag in ("--project-dir", "--profiles-dir"):
        if flag not in arguments and arguments[:1] not in (["--help"], ["-h"], ["--version"], []):
            arguments += [flag, str(TRANSFORM_DIR)]
    result = dbtRunner().invoke(arguments)
    raise typer.Exit(0 if result.success else 1)


app.command()(analytics_commands.dev)
app.command()(analytics_commands.docs)
app.command()(observability_commands.lineage)
app.add_typer(observability_commands.metrics, name="metrics")
app.add_typer(observability_commands.anomalies, name="anomalies")
app.add_typer(analytics_commands.ci, name="ci")
app.add_typer(privacy, name="privacy")


cdc = typer.Typer(help="Postgres change data capture: publication, slot, lag, re-snapshot.")
app.add_typer(cdc, name="cdc")
CdcSource = Annotated[str, typer.Argument(help="A CDC source (its settings: sources.<name>.*).")]
AdminDsn = Annotated[
    str | None,
    typer.Option(envvar="ELT_CDC_ADMIN_DSN", help="URL of a role owning the tables (publication set-up)."),
]


def _cdc_settings(source: str):  # type: ignore[no-untyped-def]
    """The source's CDC settings and tables, or a one-line failure."""
    apply_runtime_environment()
    from dlt.common.configuration.exceptions import ConfigFieldMissingException

    from dlt_sources.postgres_cdc import resolve_settings
    from dlt_sources.registry import cdc_sources
    from flows.ingest import missing_settings_error, use_environment_slots

    replicated = cdc_sources()
    if source not in replicated:
        _fail(f"{source} is not a CDC source; CDC sources: {', '.join(replicated)}")
    try:
        use_environment_slots()
        return resolve_settings(source), replicated[source].cdc_tables
    except ConfigFieldMissingException as exc:
        _fail(str(missing_settings_error(source, exc)))
    except (SourceError, ConfigError) as exc:
        _fail(str(exc))


@cdc.command("setup")
def cdc_setup(
    source: CdcSource,
    admin_dsn: AdminDsn = None,
    role: Annotated[
        str | None, typer.Option(help="Replication role; default: the user in the credentials.")
    ] = None,
) -> None:
    """(Admin) create or extend the publication and grant SELECT to the replication role."""
    from dlt_sources.postgres_cdc import admin

    settings, tables = _cdc_settings(source)
    if not admin_dsn:
        _fail("--admin-dsn (or ELT_CDC_ADMIN_DSN) is required: publications are created by the tables' owner")
    try:
        console.print(admin.setup(source, settings, tables, admin_dsn, role))
    except SourceError as exc:
        _fail(str(exc))


@cdc.command("status")
def cdc_status(source: CdcSource) -> None:
    """Show the publication, the slot, its WAL status and lag (retained WAL) against the alert threshold."""
    from dlt_sources.postgres_cdc import admin

    settings, _ = _cdc_settings(source)
    try:
        for label, value in admin.status(source, settings):
            console.print(f"{label:>22}: {value}", highlight=False)
    except SourceError as exc:
        _fail(str(exc))


@cdc.command("drop")
def cdc_drop(
    source: CdcSource,
    publication: Annotated[bool, typer.Option(help="Also drop the publication (needs --admin-dsn).")] = False,
    admin_dsn: AdminDsn = None,
) -> None:
    """Drop the replication slot (the next run re-snapshots), optionally the publication too."""
    from dlt_sources.postgres_cdc import admin

    settings, _ = _cdc_settings(source)
    if publication and not admin_dsn:
        _fail("--publication needs --admin-dsn (or ELT_CDC_ADMIN_DSN)")
    try:
        for line in admin.drop(source, settings, admin_dsn if publication else None):
            console.print(line)
    except SourceError as exc:
        _fail(str(exc))


@cdc.command("resnapshot")
def cdc_resnapshot(source: CdcSource, warehouse: WarehouseOption = None) -> None:
    """Recover a lost slot: drop it, create a new one and reload every table from its snapshot."""
    _cdc_settings(source)
    try:
        settings = load_settings(warehouse)
    except ConfigError as exc:
        _fail(str(exc))
    from flows.config import environment
    from flows.ingest import run_source

    with environment({f"SOURCES__{source.upper()}__RESNAPSHOT": "true"}):
        try:
            result = run_source(source, settings)
        except SourceError as exc:
            _fail(str(exc))
    console.print(f"re-snapshot of {source}: {result.total_rows:,} rows into {result.dataset}")
    for note in result.notes:
        console.print(note, highlight=False)
    console.print("run `elt run` to rebuild the models from it")


contracts = typer.Typer(help="Soda contracts in checks/.")
app.add_typer(contracts, name="contracts")


@contracts.command("scaffold")
def contracts_scaffold(
    table: Annotated[
        str, typer.Argument(help="raw_<source>.<table> (from the dlt schema) or a dbt model name.")
    ],
    force: Annotated[bool, typer.Option(help="Overwrite an existing contract.")] = False,
    warehouse: WarehouseOption = None,
) -> None:
    """Write a first contract for TABLE under checks/, to review and extend with business rules."""
    from flows.scaffold import ScaffoldError, scaffold_contract

    try:
        path = scaffold_contract(table, load_settings(warehouse), force=force)
    except (ConfigError, ScaffoldError) as exc:
        _fail(str(exc))
    console.print(f"wrote {path}; review it, add business rules, then commit it")


def _exit_on_sigterm(signum: int, frame: object) -> None:
    """Turn SIGTERM into SystemExit so context managers stop the demo's servers."""
    raise SystemExit(128 + signum)


def main() -> None:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    app(prog_name="elt")


if __name__ == "__main__":
    sys.exit(main())
