"""What each stage of a run produced: loads, contract verdicts, dbt builds.

Why one module: the run report (report.py) and the audit trail (audit.py) read these
results; imported from the stage modules, they tied every reader to the stages' Prefect
tasks, Soda and dbt. Plain dataclasses, no I/O: a test can build any of them by hand.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

from flows.config import PROJECT_DIR


@dataclass
class IngestResult:
    """What one source's pipeline loaded in this run."""

    source: str
    dataset: str
    rows: dict[str, int] = field(default_factory=dict)
    duration_s: float = 0.0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    # every data table of the source, also those that got no new rows
    tables: list[str] = field(default_factory=list)
    load_ids: list[str] = field(default_factory=list)
    # tables this load created (name → columns), and new columns of existing ones (table.column)
    new_tables: dict[str, int] = field(default_factory=dict)
    schema_changes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # CDC: replication slot → WAL bytes it retained after the load
    slot_lag_bytes: dict[str, int] = field(default_factory=dict)
    # lineage: each table's columns (dlt's types) and the bytes of the files loaded into it
    columns: dict[str, dict[str, str]] = field(default_factory=dict)
    loaded_bytes: dict[str, int] = field(default_factory=dict)
    # rows of forgotten people this load kept out (dropped or redacted), per table
    erased: dict[str, int] = field(default_factory=dict)

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())


class Outcome(StrEnum):
    """Outcome of one check; ERROR means not evaluated because the run errored."""

    PASSED = "PASSED"
    WARN = "WARN"
    FAILED = "FAILED"
    NOT_EVALUATED = "NOT_EVALUATED"
    ERROR = "ERROR"
    EXCLUDED = "EXCLUDED"


# Anything else (FAILED, NOT_EVALUATED, ERROR, EXCLUDED) fails the contract: fail closed.
_OK_OUTCOMES: frozenset[Outcome] = frozenset({Outcome.PASSED, Outcome.WARN})


_RULE_TYPES = frozenset({"failed_rows", "metric"})


@dataclass(frozen=True)
class CheckRecord:
    """One check of a contract, reduced to what a failure report needs."""

    name: str
    type: str
    column: str | None
    outcome: Outcome
    metric: str | None = None
    value: Any = None
    details: str | None = None
    diagnostics: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.outcome in _OK_OUTCOMES

    @property
    def label(self) -> str:
        """Short stable label such as ``missing id`` (Soda's default names are not unique);
        a business rule (failed_rows, metric) has no column, so its own name says what broke."""
        if self.type in _RULE_TYPES:
            return f"{self.type}: {self.name}"
        return f"{self.type} {self.column}" if self.column else self.type

    def describe(self) -> str:
        """e.g. ``check 'missing id' failed (missing_count=3)``."""
        verb = {
            Outcome.FAILED: "failed",
            Outcome.WARN: "warned",
            Outcome.NOT_EVALUATED: "was not evaluated",
            Outcome.ERROR: "errored",
            Outcome.EXCLUDED: "was excluded",
        }.get(self.outcome, self.outcome.value.lower())
        facts = []
        if self.metric is not None and self.value is not None:
            value = round(self.value, 2) if isinstance(self.value, float) else self.value
            facts.append(f"{self.metric}={value}")
        if self.details:
            facts.append(self.details)
        suffix = f" ({'; '.join(facts)})" if facts else ""
        return f"check '{self.label}' {verb}{suffix}"


@dataclass
class ContractResult:
    """Verdict for one contract file; ``passed`` already applies the fail-closed rules."""

    contract: Path
    dataset: str
    passed: bool
    checks: list[CheckRecord] = field(default_factory=list)
    error: str | None = None
    qualified_name: str | None = None
    duration_s: float = 0.0

    @property
    def failed_checks(self) -> list[CheckRecord]:
        return [check for check in self.checks if not check.ok]

    def summary(self) -> str:
        """One line for logs, passing or not."""
        if not self.passed:
            return self.failure_message()
        return (
            f"contract {display_path(self.contract)} passed: table {self.dataset}, "
            f"{len(self.checks)} checks in {self.duration_s:.2f}s"
        )

    def failure_message(self) -> str:
        """Name the table and every failing check with its value (empty when passed)."""
        if self.passed:
            return ""
        parts = [check.describe() for check in self.failed_checks]
        if not self.checks and not self.error:
            parts.append("no checks were run")
        if self.error:
            parts.append(f"error: {self.error}")
        return f"contract {display_path(self.contract)} failed: table {self.dataset}, " + "; ".join(parts)


def display_path(path: Path) -> str:
    """Repo-relative path for messages, e.g. checks/marts/fct_orders.yml."""
    try:
        return str(path.resolve().relative_to(PROJECT_DIR))
    except ValueError:
        return str(path)


# dbt writes these strings into run_results.json (RunStatus / TestStatus / NodeStatus).
FAILED_STATUSES: Final[frozenset[str]] = frozenset({"error", "fail", "runtime error"})
SKIPPED_STATUSES: Final[frozenset[str]] = frozenset({"skipped", "no-op"})
WARNED_STATUSES: Final[frozenset[str]] = frozenset({"warn"})


@dataclass(frozen=True)
class NodeResult:
    """Outcome of one dbt node, as reported in run_results.json."""

    unique_id: str
    status: str
    execution_time: float
    message: str | None = None
    started_at: str | None = None
    completed_at: str | None = None

    @property
    def resource_type(self) -> str:
        """dbt resource type (model, test, unit_test, seed, ...) from the unique_id prefix."""
        return self.unique_id.split(".", 1)[0]

    @property
    def name(self) -> str:
        """Short node name: the last segment of the unique_id (for a data test the one
        before its hash suffix, ``test.<package>.<name>.<hash>``)."""
        parts = self.unique_id.split(".")
        return parts[2] if self.resource_type == "test" and len(parts) > 3 else parts[-1]


@dataclass(frozen=True)
class DbtBuildSummary:
    """What a dbt invocation built, skipped and failed, with timings.

    Small and serialisable so a flow can return it and later steps (Soda checks,
    notifications) can decide what to do without re-reading dbt artifacts.
    """

    nodes: tuple[NodeResult, ...] = ()
    elapsed_seconds: float = 0.0
    invocation_id: str | None = None
    command: str | None = None

    @property
    def built(self) -> tuple[str, ...]:
        """Nodes that ran and passed (warnings included)."""
        excluded = FAILED_STATUSES | SKIPPED_STATUSES
        return tuple(n.unique_id for n in self.nodes if n.status not in excluded)

    @property
    def skipped(self) -> tuple[str, ...]:
        """Nodes dbt skipped, usually because an upstream node failed."""
        return tuple(n.unique_id for n in self.nodes if n.status in SKIPPED_STATUSES)

    @property
    def failed(self) -> tuple[str, ...]:
        """Nodes that errored or whose tests failed."""
        return tuple(n.unique_id for n in self.nodes if n.status in FAILED_STATUSES)

    @property
    def warned(self) -> tuple[str, ...]:
        """Tests that returned rows but are configured with severity warn."""
        return tuple(n.unique_id for n in self.nodes if n.status in WARNED_STATUSES)

    @property
    def success(self) -> bool:
        """True when no node failed."""
        return not self.failed

    def slowest(self, count: int = 5) -> tuple[NodeResult, ...]:
        """The ``count`` nodes with the longest execution time, slowest first."""
        ordered = sorted(self.nodes, key=lambda n: n.execution_time, reverse=True)
        return tuple(ordered[:count])

    def describe(self) -> str:
        """One-line human summary for logs."""
        return (
            f"dbt: {len(self.built)} built, {len(self.skipped)} skipped, "
            f"{len(self.failed)} failed, {len(self.warned)} warned "
            f"in {self.elapsed_seconds:.1f}s"
        )

    def failure_message(self) -> str:
        """Multi-line description of failed nodes, naming each one."""
        by_id = {n.unique_id: n for n in self.nodes}
        lines = [f"dbt build failed: {len(self.failed)} node(s) failed"]
        for unique_id in self.failed:
            node = by_id[unique_id]
            message = (node.message or "").strip().replace("\n", " ")
            lines.append(f"  - {unique_id} [{node.status}] {message}".rstrip())
        if self.skipped:
            lines.append(f"  ({len(self.skipped)} downstream node(s) skipped)")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (JSON-friendly) including the derived lists."""
        data = asdict(self)
        data.update(
            built=list(self.built),
            skipped=list(self.skipped),
            failed=list(self.failed),
            warned=list(self.warned),
            success=self.success,
        )
        return data
