"""``elt privacy map | forget | export``: where people are, erase one, show what is held.

The subject is given as ``KIND:VALUE`` (``email:alice@example.com``,
``shop_customer:123``, ``stripe_customer:cus_…``), on the command line or, to keep it out of
shell history and the process list, in a file (``--subject-file``, ``-`` for stdin).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from flows.config import ConfigError, data_dir, load_settings
from flows.terminal import WarehouseOption, console, run_logs_in_file
from flows.terminal import fail as _fail

privacy = typer.Typer(
    help="Personal data: where it lives, forget a person (GDPR art. 17), export what is held (art. 15)."
)

SubjectOption = Annotated[
    str | None,
    typer.Option("--subject", help="KIND:VALUE, e.g. email:alice@example.com or shop_customer:123."),
]
SubjectFileOption = Annotated[
    Path | None,
    typer.Option("--subject-file", help="Read KIND:VALUE from this file ('-': stdin) instead of --subject."),
]


def _subject(text: str | None, file: Path | None):  # type: ignore[no-untyped-def]
    from flows.privacy.subjects import Subject

    if (text is None) == (file is None):
        _fail("give the person as --subject KIND:VALUE or --subject-file PATH (one of them)")
    if file is not None:
        text = (sys.stdin.read() if str(file) == "-" else file.read_text(encoding="utf-8")).strip()
    try:
        return Subject.parse(text or "")
    except ConfigError as exc:
        _fail(str(exc))


@privacy.command("map")
def privacy_map_command(warehouse: WarehouseOption = None) -> None:
    """Every table of the warehouse that can hold a person: identifiers, personal data, policy."""
    from flows.privacy.matching import catalog, warehouse_session
    from flows.privacy.places import privacy_map
    from flows.transform import parse_project

    try:
        settings = load_settings(warehouse)
        settings.export_tool_environment()
        with warehouse_session(settings) as session:
            places = privacy_map(catalog(settings, session), parse_project(quiet=True).contents)
    except ConfigError as exc:
        _fail(str(exc))
    table = Table(title="Where people are (PII map), by schema", title_justify="left")
    table.add_column("table", no_wrap=True)
    table.add_column("what", max_width=12)
    table.add_column("erasure", no_wrap=True)
    table.add_column("people by", overflow="fold")
    table.add_column("personal data", overflow="fold")
    schema = None
    for place in places:
        if place.schema != schema:
            schema = place.schema
            table.add_row(f"[bold]{escape(schema)}[/]", end_section=False)
        kinds = sorted({s.kind for s in place.subjects()})
        identifying = {s.column for s in place.subjects()}
        personal = [name for name in place.privacy.pii if place.column(name) and name not in identifying]
        personal += [f"{name} (any id)" for name in place.mentions()]
        policy = place.privacy.policy if place.stores_rows else "-"
        table.add_row(f"  {place.table}", place.kind, policy, ", ".join(kinds), ", ".join(personal))
    console.print(table)


@privacy.command("forget")
def privacy_forget_command(
    subject: SubjectOption = None, subject_file: SubjectFileOption = None, warehouse: WarehouseOption = None
) -> None:
    """Erase a person everywhere, keep them out of later loads; proof in elt_audit.erasures."""
    person = _subject(subject, subject_file)
    from flows.privacy.erasure import privacy_forget, submit

    request_id = submit(person)
    with run_logs_in_file(data_dir() / "logs") as log_file:
        try:
            report = privacy_forget(request_id=request_id, warehouse=warehouse)
        except ConfigError as exc:
            _fail(str(exc))
    table = Table(title=f"Erasure {report.request_id}", title_justify="left")
    table.add_column("table", overflow="fold")
    for name in ("rows", "person's rows", "done"):
        table.add_column(name, justify="right" if name != "done" else "left", no_wrap=True)
    for row in report.erased_tables:
        table.add_row(
            row.place,
            f"{row.table_rows_before:,} → {row.table_rows_after:,}",
            f"{row.subject_rows_before:,} → {row.subject_rows_after:,}",
            row.action,
        )
    if table.rows:
        console.print(table)
    for note in report.notes:
        console.print(note, highlight=False, soft_wrap=True)
    outcome = (
        f"{report.rows_erased:,} rows erased in {len(report.erased_tables)} tables"
        if report.rows_erased
        else "nothing held about this person: nothing erased"
    )
    console.print(
        f"{report.identifiers}; {outcome}; {report.tombstones_added} new tombstones; "
        f"proof: elt_audit.erasures request_id = '{report.request_id}'",
        highlight=False,
        soft_wrap=True,
    )
    console.print(f"full log: {log_file} (and the flow run in Prefect)", highlight=False, soft_wrap=True)
    if not report.complete:
        _fail("some rows of the person remain (see the table above); run the same command again")


@privacy.command("export")
def privacy_export_command(
    subject: SubjectOption = None,
    subject_file: SubjectFileOption = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here (default: stdout).")
    ] = None,
    warehouse: WarehouseOption = None,
) -> None:
    """Every row held about a person (raw tables, history, marts), as one JSON document."""
    person = _subject(subject, subject_file)
    from flows.privacy.export import export

    try:
        settings = load_settings(warehouse)
        settings.export_tool_environment()
        document = json.dumps(export(settings, person), indent=2, ensure_ascii=False)
    except ConfigError as exc:
        _fail(str(exc))
    if output is None:
        print(document)
    else:
        output.write_text(document + "\n", encoding="utf-8")
        console.print(f"wrote {output}", highlight=False)
