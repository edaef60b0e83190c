"""The operator audit: every ``elt`` command that changes data leaves a row in ``elt_audit.operations``.

Who (``ELT_OPERATOR``, else the login and host), when, which command and its arguments,
appended before the command starts, so a command that crashes or is killed is on record
too. Arguments are kept as typed, except: a secret's value (any value of a secret-looking
setting, a URL's password) is masked, and a person named with ``--subject`` appears only as
the keyed hash a tombstone would hold (flows/privacy/). Read-only commands (status, docs,
lineage, metrics, map, export's listing) leave nothing; ``elt privacy export`` does, since
it hands a person's data out.

The hook is the CLI's command group (:class:`AuditedCommands`), so every way of invoking a
command (the console script, ``python -m``, Click's test runner) is covered.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import socket
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from typer.core import TyperGroup

from flows.redact import first_line, redact

TABLE = "operations"
# command paths that change data, or hand a person's data out (a group's own name stands for
# all of its commands)
AUDITED: frozenset[tuple[str, ...]] = frozenset(
    {
        ("run",),
        ("demo",),
        ("backfill",),
        ("dbt",),
        ("dev",),
        ("ci",),
        ("stream",),
        ("publish",),
        ("cdc", "setup"),
        ("cdc", "drop"),
        ("cdc", "resnapshot"),
        ("privacy", "forget"),
        ("privacy", "export"),
        ("anomalies", "ack"),
    }
)
_SUBJECT_OPTIONS = ("--subject",)
_URL_PASSWORD = re.compile(r"(://[^:/@\s]+:)[^@\s]+@")


@dataclass(frozen=True)
class OperationRecord:
    operation_id: str
    command: str
    arguments: str  # JSON list, masked
    operator: str
    host: str
    started_at: datetime


def command_path(args: Sequence[str]) -> tuple[str, ...] | None:
    """The data-changing command ``args`` invoke (``("cdc", "drop")``), or None."""
    words = tuple(arg for arg in args[:2] if not arg.startswith("-"))
    for length in (2, 1):
        if words[:length] in AUDITED:
            return words[:length]
    return None


def masked(args: Sequence[str], hash_subject: Any) -> list[str]:
    """``args`` with secrets masked and a ``--subject``'s value replaced by its keyed hash."""
    out: list[str] = []
    subject_next = False
    for arg in args:
        if subject_next:
            out.append(hash_subject(arg))
            subject_next = False
            continue
        option, sep, value = arg.partition("=")
        if option in _SUBJECT_OPTIONS:
            if sep:
                out.append(f"{option}={hash_subject(value)}")
            else:
                out.append(arg)
                subject_next = True
            continue
        out.append(_URL_PASSWORD.sub(r"\1***@", redact(arg)))
    return out


def record_operation(args: Sequence[str]) -> None:
    """Append the invocation to ``elt_audit.operations`` if it changes data. Never stops the
    command: a warehouse that cannot be written now (DuckDB's file held by a run) is said on
    stderr, and the command's own writes wait for it as they always do."""
    path = command_path(args)
    if path is None or "--help" in args:
        return
    from flows.audit import now, record
    from flows.config import ConfigError, apply_runtime_environment, load_settings

    apply_runtime_environment()  # before dlt is touched: telemetry off, its folders in the data dir
    try:
        settings = load_settings(_warehouse_option(args))
    except ConfigError:
        return  # the command itself stops on it, naming the setting
    try:
        arguments = json.dumps(masked(args, lambda text: _hashed_subject(settings, text)))
        operation = f"op-{uuid.uuid4().hex[:12]}"
        row = OperationRecord(operation, " ".join(path), arguments, operator(), socket.gethostname(), now())
        record(settings, TABLE, [row])
    except Exception as exc:
        print(
            f"warning: could not record this operation in elt_audit.{TABLE}: {first_line(exc)}",
            file=sys.stderr,
        )


def operator() -> str:
    """Who acts: ``ELT_OPERATOR`` (a deployment or a wrapper names the person), else the login."""
    return os.environ.get("ELT_OPERATOR") or getpass.getuser()


def _warehouse_option(args: Sequence[str]) -> str | None:
    for index, arg in enumerate(args):
        if arg in ("-w", "--warehouse") and index + 1 < len(args):
            return args[index + 1]
        if arg.startswith("--warehouse="):
            return arg.split("=", 1)[1]
    return None


def _hashed_subject(settings: Any, text: str) -> str:
    """``email:<keyed hash>``: the kind stays readable, the person does not."""
    from dlt_sources.common.privacy import keyed_hash
    from flows.privacy.tombstones import tombstone_key

    kind, _, value = text.partition(":")
    return f"{kind}:{keyed_hash(tombstone_key(settings), kind, value)}"


class AuditedCommands(TyperGroup):
    """The ``elt`` command group: records a data-changing invocation, then runs it."""

    def invoke(self, ctx: Any) -> Any:
        record_operation([*getattr(ctx, "_protected_args", []), *ctx.args])
        return super().invoke(ctx)
