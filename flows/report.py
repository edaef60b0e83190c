"""The run report: what one ELT run loaded, built and checked, and how long each stage took.

Rendered twice from the same data: a Prefect markdown artifact (kept with the
flow run) and a rich table on the terminal. Holds no secrets: only table names,
counts, durations and check outcomes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from flows import progress
from flows.redact import first_line
from flows.results import ContractResult, DbtBuildSummary, IngestResult, Outcome

if TYPE_CHECKING:
    from flows.audit import AnomalyRecord


@dataclass
class StageTiming:
    name: str
    seconds: float
    status: str


@dataclass
class RunSummary:
    warehouse: str
    stages: list[StageTiming] = field(default_factory=list)
    ingests: list[IngestResult] = field(default_factory=list)
    contracts: list[ContractResult] = field(default_factory=list)
    dbt: DbtBuildSummary | None = None
    # what the build planned (flows/dbt_graph.py): one line, then the nodes that wait
    build_plan: list[str] = field(default_factory=list)
    published: list[str] = field(default_factory=list)
    error: str | None = None
    # warnings of the run's own observers (lineage that could not be sent, anomalies)
    observed: list[str] = field(default_factory=list)
    # this run's table-level lineage, a Mermaid flowchart (flows/lineage)
    lineage: str = ""
    # the series this run's points took out of their bands (flows/anomalies.py)
    anomalies: list[AnomalyRecord] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def failed_stage(self) -> str | None:
        return next((stage.name for stage in reversed(self.stages) if stage.status == "failed"), None)

    def failed_items(self) -> list[str]:
        """What failed, by name: each contract with its failing checks, each dbt node."""
        items = [
            f"{contract.dataset}: {', '.join(check.label for check in contract.failed_checks)}"
            if contract.failed_checks
            else f"{contract.dataset}: {contract.error}"
            for contract in self.contracts
            if not contract.passed
        ]
        return items + list(self.dbt.failed if self.dbt else ())

    @property
    def rows_loaded(self) -> int:
        return sum(result.total_rows for result in self.ingests)

    @property
    def warnings(self) -> list[str]:
        """Warnings a person should read even when the run passed: a source's (a TRUNCATE, slot
        lag) and every contract check at warn level that fired (e.g. stale data)."""
        sources = [warning for result in self.ingests for warning in result.warnings]
        checks = [
            f"contract {contract.dataset}: {check.describe()}"
            for contract in self.contracts
            for check in contract.checks
            if check.outcome is Outcome.WARN
        ]
        return sources + checks + self.observed

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time a stage and record whether it passed; the error itself propagates."""
        started = time.perf_counter()
        progress.stage_started(name)
        try:
            yield
        except BaseException as exc:
            self._finish(name, started, "failed")
            self.error = self.error or f"{name}: {first_line(exc)}"
            raise
        self._finish(name, started, "ok")

    def _finish(self, name: str, started: float, status: str) -> None:
        seconds = time.perf_counter() - started
        self.stages.append(StageTiming(name, seconds, status))
        progress.stage_finished(name, seconds, status)

    def table_rows(self) -> list[tuple[str, int]]:
        """Rows loaded per ``dataset.table``; tables with no new rows show 0."""
        rows = []
        for result in self.ingests:
            rows.extend((f"{result.dataset}.{table}", count) for table, count in sorted(result.rows.items()))
            if not result.rows:
                rows.append((f"{result.dataset}.*", 0))
        return rows

    def to_markdown(self) -> str:
        status = "succeeded" if self.ok else f"failed — {self.error}"
        lines = [
            f"# ELT run on {self.warehouse}: {status}",
            "",
            "## Rows loaded",
            "",
            "| table | rows |",
            "|---|---:|",
        ]
        lines += [f"| {table} | {rows:,} |" for table, rows in self.table_rows()]
        changes = [
            f"- new table `{r.dataset}.{table}` ({columns} columns)"
            for r in self.ingests
            for table, columns in sorted(r.new_tables.items())
        ]
        changes += [f"- new column `{r.dataset}.{name}`" for r in self.ingests for name in r.schema_changes]
        if changes:
            lines += ["", "## Schema changes", "", *changes]
        if self.warnings:
            lines += ["", "## Warnings", "", *[f"- {warning}" for warning in self.warnings]]
        notes = [note for result in self.ingests for note in result.notes]
        if notes:
            lines += ["", "## Source notes", "", *[f"- {note}" for note in notes]]
        lines += ["", "## Stages", "", "| stage | seconds | status |", "|---|---:|---|"]
        lines += [f"| {s.name} | {s.seconds:.1f} | {s.status} |" for s in self.stages]
        if self.build_plan or self.dbt:
            lines += ["", "## dbt", "", *[f"- {line}" for line in self.build_plan]]
        if self.dbt:
            lines += ["", self.dbt.describe(), "", *_dbt_nodes_markdown(self.dbt)]
        if self.published:
            lines += ["", f"Published: {', '.join(self.published)}"]
        lines += ["", "## Contracts", "", "| table | result | checks |", "|---|---|---:|"]
        for contract in self.contracts:
            verdict = "passed" if contract.passed else f"FAILED: {contract.failure_message()}"
            lines.append(f"| {contract.dataset} | {verdict} | {len(contract.checks)} |")
        if self.anomalies:
            lines += ["", "## Anomalies", "", "| series | value | expected | band | score | level |"]
            lines += ["|---|---:|---:|---|---:|---|"]
            lines += [
                f"| {a.dataset}.{a.table_name} {a.metric} | {a.value:,.4g} | {a.expected or 0:,.4g} "
                f"| {a.lower or 0:,.4g} .. {a.upper or 0:,.4g} | {a.score or 0:+.1f} | {a.level} |"
                for a in self.anomalies
            ]
        if self.lineage:
            lines += ["", "## Lineage", "", "```mermaid", self.lineage, "```"]
        return "\n".join(lines) + "\n"

    def print(self, console: Console | None = None) -> None:
        """The summary for a terminal, fitting 80 columns: rows per table (new tables and
        columns noted), one line per stage and for the contracts unless some failed,
        warnings, the build and what was published."""
        console = console or Console()
        rows = Table(title="Rows loaded", title_justify="left")
        rows.add_column("table", overflow="fold")
        rows.add_column("rows", justify="right")
        rows.add_column("schema", overflow="fold")
        changes = self._schema_changes()
        for table, count in self.table_rows():
            rows.add_row(table, f"{count:,}", changes.get(table, ""))
        console.print(rows)
        stages = " · ".join(
            f"{s.name} {s.seconds:.1f}s" + ("" if s.status == "ok" else " FAILED") for s in self.stages
        )
        console.print(f"stages: {stages}", highlight=False, soft_wrap=True)
        failed = [contract for contract in self.contracts if not contract.passed]
        layers = {"raw": 0, "marts": 0}
        for contract in self.contracts:
            layers["marts" if "_marts" in contract.dataset else "raw"] += 1
        console.print(
            f"contracts: {len(self.contracts) - len(failed)} of {len(self.contracts)} passed "
            f"({layers['raw']} raw, {layers['marts']} marts)",
            highlight=False,
        )
        for contract in failed:
            console.print(
                f"[red]failed:[/] {escape(contract.failure_message())}", highlight=False, soft_wrap=True
            )
        for warning in self.warnings:
            console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)
        for line in self.build_plan:
            console.print(line, highlight=False, soft_wrap=True)
        if self.dbt:
            console.print(self.dbt.describe(), highlight=False)
        if self.published:
            console.print(f"published: {', '.join(self.published)}", highlight=False, soft_wrap=True)
        console.print(
            "[green]ELT run succeeded[/]"
            if self.ok
            else f"[red]ELT run failed:[/] {escape(self.error or '')}"
        )

    def _schema_changes(self) -> dict[str, str]:
        """``dataset.table`` → what is new about it: the whole table, or some columns."""
        changes: dict[str, str] = {}
        for result in self.ingests:
            for table, columns in result.new_tables.items():
                changes[f"{result.dataset}.{table}"] = f"new table, {columns} columns"
            new_columns: dict[str, list[str]] = {}
            for name in result.schema_changes:
                table, _, column = name.partition(".")
                new_columns.setdefault(f"{result.dataset}.{table}", []).append(column)
            for table, columns in new_columns.items():
                changes.setdefault(table, "new columns " + ", ".join(columns))
        return changes


def _dbt_nodes_markdown(dbt: DbtBuildSummary) -> list[str]:
    """Every node of the build: failed first, then skipped, then built, slowest first."""
    order = {"failed": 0, "skipped": 1, "built": 2}
    outcome = {node: "failed" for node in dbt.failed} | {node: "skipped" for node in dbt.skipped}
    nodes = sorted(
        dbt.nodes,
        key=lambda n: (order[outcome.get(n.unique_id, "built")], -n.execution_time, n.unique_id),
    )
    lines = ["| node | type | outcome | seconds |", "|---|---|---|---:|"]
    for node in nodes:
        label = outcome.get(node.unique_id, "built") + (" (warn)" if node.status == "warn" else "")
        lines.append(f"| {node.name} | {node.resource_type} | {label} | {node.execution_time:.2f} |")
    return lines
