"""What lineage is about, as plain data: tables, where columns come from, the runs of jobs.

Plain dataclasses, so the stages, the store and ``elt lineage`` need neither the
OpenLineage client nor sqlglot; ``events.py`` turns a :class:`JobRun` into OpenLineage
events only when there is somewhere to send them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Table:
    """A table in a namespace, with its columns (name → type) where known."""

    namespace: str
    name: str
    columns: Mapping[str, str] | None = None


@dataclass(frozen=True)
class FieldSource:
    """An input field an output column comes from, and how (OpenLineage's transformation subtype)."""

    namespace: str
    name: str
    field: str
    subtype: str = "IDENTITY"
    masking: bool = False


@dataclass(frozen=True)
class Parent:
    """The Prefect flow run every event belongs to."""

    namespace: str
    job: str
    run_id: str


@dataclass(frozen=True)
class Output:
    """A table a job wrote: where each column comes from, how many rows and bytes."""

    table: Table
    lineage: Mapping[str, Sequence[FieldSource]] | None = None
    rows: int | None = None
    size: int | None = None


@dataclass(frozen=True)
class Checked:
    """A table a contract checked, with each check as (name, passed, column)."""

    table: Table
    assertions: Sequence[tuple[str, bool, str | None]]


@dataclass(frozen=True)
class JobRun:
    """One job's run: what it read and wrote, when, how it ended (plain data: the OpenLineage
    objects are built only when events are sent)."""

    name: str
    job_type: str  # LOAD, MODEL, SNAPSHOT, SEED, TEST (a contract), PUBLISH
    integration: str  # DLT, DBT, SODA, ELT
    started: datetime
    finished: datetime
    inputs: Sequence[Table | Checked] = ()
    outputs: Sequence[Output] = ()
    error: str | None = None
    sql: str | None = None
