"""Every text a run leaves behind, gathered so a test can search it for known secrets
(or raw emails).

Why one helper: a leak can hide anywhere a person or a tool reads later — a log line in
the Prefect API, an artifact, a state message, an alert, an exception's text, dlt's
pipeline folders (trace, state, load packages), dbt's target/ and logs/, the warehouse's
own tables — and every test that proves "no secret anywhere" must look in all of them
the same way. Each text comes with where it was found, so a failure points at the leak.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import duckdb

from flows.build_state import decode_manifest

# (where it was found, the text)
Text = tuple[str, str]

# An email address as a person would write it (RFC 5322's common subset).
EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
# The same pattern in DuckDB's regexp dialect (RE2), for scanning tables in SQL.
EMAIL_SQL = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"

_PAGE = 200


def leaks(texts: Iterable[Text], secrets: Iterable[str]) -> list[tuple[str, str, str]]:
    """``(where, the secret's first 6 characters, the text around it)`` for each secret found."""
    wanted = [secret for secret in secrets if secret]
    found = []
    for where, text in texts:
        for secret in wanted:
            at = text.find(secret)
            if at >= 0:
                found.append((where, secret[:6], text[max(0, at - 80) : at + len(secret) + 80]))
    return found


def emails_in(texts: Iterable[Text], emails: set[str]) -> list[tuple[str, str]]:
    """``(where, email)`` for every address of ``emails`` that appears in the texts."""
    return [
        (where, match)
        for where, text in texts
        for match in set(EMAIL.findall(text))
        if match.lower() in emails
    ]


# --- Prefect ------------------------------------------------------------------------------------


def _pages(read: Callable[..., list[Any]], **kwargs: Any) -> Iterator[Any]:
    offset = 0
    while page := read(limit=_PAGE, offset=offset, **kwargs):
        yield from page
        offset += len(page)


def flow_run_ids_since(moment: datetime) -> list[UUID]:
    """The flow runs created (expected to start) at or after ``moment``: one test module's runs."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterExpectedStartTime

    since = FlowRunFilter(expected_start_time=FlowRunFilterExpectedStartTime(after_=moment))
    with get_client(sync_client=True) as client:
        return [run.id for run in _pages(client.read_flow_runs, flow_run_filter=since)]


def prefect_texts(flow_run_ids: Sequence[UUID] | None = None) -> list[Text]:
    """Every log line, artifact, flow and task run state message and parameter of the flow runs
    (default: all of them) and every Prefect Variable, read back through the Prefect API."""
    from prefect import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterId,
        LogFilter,
        LogFilterFlowRunId,
    )

    ids = list(flow_run_ids) if flow_run_ids is not None else None
    runs = FlowRunFilter(id=FlowRunFilterId(any_=ids)) if ids is not None else None
    logs = LogFilter(flow_run_id=LogFilterFlowRunId(any_=ids)) if ids is not None else None
    artifacts = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=ids)) if ids is not None else None
    texts: list[Text] = []
    with get_client(sync_client=True) as client:
        for flow_run in _pages(client.read_flow_runs, flow_run_filter=runs):
            where = f"flow run {flow_run.name}"
            texts.append((f"{where} parameters", str(flow_run.parameters)))
            if flow_run.state is not None:
                texts.append((f"{where} state", f"{flow_run.state.name}: {flow_run.state.message}"))
        for task_run in _pages(client.read_task_runs, flow_run_filter=runs):
            if task_run.state is not None:
                texts.append((f"task run {task_run.name} state", str(task_run.state.message)))
        texts += [
            (f"log {log.name} {log.timestamp}", log.message)
            for log in _pages(client.read_logs, log_filter=logs)
        ]
        texts += [
            (f"artifact {artifact.key}", f"{artifact.description}\n{artifact.data}")
            for artifact in _pages(client.read_artifacts, artifact_filter=artifacts)
        ]
        texts += [(f"variable {variable.name}", str(variable.value)) for variable in client.read_variables()]
    return texts


# --- exceptions ---------------------------------------------------------------------------------


def exception_texts(error: BaseException, where: str = "exception") -> list[Text]:
    """str and repr of every exception in ``error``'s chain (causes, contexts and dlt's wrapped
    ``.exception``), and the formatted traceback a log handler would print."""
    texts: list[Text] = [(f"{where} traceback", "".join(traceback.format_exception(error)))]
    seen: list[BaseException] = []
    pending: list[BaseException] = [error]
    while pending:
        current = pending.pop()
        if any(current is known for known in seen):
            continue
        seen.append(current)
        name = f"{where} {type(current).__name__}"
        texts += [(name, str(current)), (f"{name} repr", repr(current))]
        linked = (getattr(current, "exception", None), current.__cause__, current.__context__)
        pending += [link for link in linked if isinstance(link, BaseException)]
    return texts


# --- files --------------------------------------------------------------------------------------


def file_texts(*folders: Path) -> list[Text]:
    """The readable text of every file under ``folders``: gzip unpacked, parquet as its values,
    dlt's compressed pipeline state decoded; anything else as UTF-8 (binary parts kept, so a
    string in a pickle or a database file is still found)."""
    texts: list[Text] = []
    for folder in folders:
        if not folder.exists():
            continue
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            texts.append((str(path), _file_text(path)))
    return texts


def _file_text(path: Path) -> str:
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    if data[:4] == b"PAR1":
        import pyarrow.parquet as pq

        table = pq.read_table(io.BytesIO(data))
        values = [str(value) for column in table.columns for value in column.to_pylist()]
        if "state" in table.column_names and "version_hash" in table.column_names:  # dlt's state row
            values += [_dlt_state(value) for value in table.column("state").to_pylist()]
        return "\n".join(values)
    return data.decode("utf-8", errors="replace")


def _dlt_state(value: Any) -> str:
    """dlt keeps its pipeline state in the warehouse as base64 of zlib-compressed JSON."""
    from dlt.pipeline.state_sync import decompress_state

    try:
        return str(decompress_state(value))
    except Exception:
        return str(value)


def dbt_folders() -> list[Path]:
    """dbt's target/ and logs/ as the flows configure them (flows/config.py)."""
    return [Path(os.environ[name]) for name in ("DBT_TARGET_PATH", "DBT_LOG_PATH") if os.environ.get(name)]


# --- the warehouse ------------------------------------------------------------------------------


def warehouse_texts(path: Path) -> list[Text]:
    """Every value of every table in a DuckDB warehouse as text, one text per table
    (``schema.table``); dlt's compressed state rows and the stored dbt manifests decoded."""
    texts: list[Text] = []
    with duckdb.connect(str(path), read_only=True) as con:
        tables = con.execute(
            "select table_schema, table_name from information_schema.tables"
            " where table_catalog = current_database() order by all"
        ).fetchall()
        for schema, table in tables:
            rows = con.execute(f'select * from "{schema}"."{table}"').fetchall()
            values = [str(value) for row in rows for value in row if value is not None]
            if table == "_dlt_pipeline_state":
                states = con.execute(f'select state from "{schema}"."{table}"').fetchall()
                values += [_dlt_state(state) for (state,) in states]
            if table == "dbt_manifests":
                manifests = con.execute(f'select manifest from "{schema}"."{table}"').fetchall()
                values += [json.dumps(decode_manifest(manifest)) for (manifest,) in manifests]
            texts.append((f"{schema}.{table}", "\n".join(values)))
    return texts
