"""A dev or CI build with what it does to the data: the console's summary, a pull-request
comment (Markdown) and the same as JSON."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flows.data_diff import ModelDiff, diff_models, markdown
from flows.slim_build import ChangeBuild


@dataclass(frozen=True)
class ChangeReport:
    """A dev or CI build with its data diff: what a pull-request comment shows."""

    build: ChangeBuild
    diffs: list[ModelDiff]
    base: str  # what the change was compared with
    max_changed_percent: float | None = None

    @property
    def over_threshold(self) -> list[ModelDiff]:
        limit = self.max_changed_percent
        return [diff for diff in self.diffs if limit is not None and diff.changed_percent > limit]

    @property
    def ok(self) -> bool:
        return self.build.ok and not self.over_threshold

    def failures(self) -> list[str]:
        """One line per reason the change fails: a node, a contract's check, a diff too large."""
        lines = [f"dbt node failed: {uid}" for uid in self.build.failed_nodes]
        lines += [result.failure_message() for result in self.build.contracts if not result.passed]
        lines += [
            f"{diff.model}: {diff.changed_percent:.1f}% of its rows differ from production "
            f"(over the {self.max_changed_percent:g}% allowed)"
            for diff in self.over_threshold
        ]
        return lines

    def built_names(self) -> list[str]:
        return [self.build.manifest["nodes"][uid]["name"] for uid in self.build.built_models]

    def markdown(self) -> str:
        built = self.built_names()
        lines = [
            f"## elt: {self.build.prefix}* compared with {self.base}",
            "",
            f"Built {len(built)} models ({', '.join(built) or 'none'}); the rest was read from production.",
            "",
            "### Contracts",
            *(
                f"- {'passed' if result.passed else 'FAILED'}: {result.dataset}"
                + ("" if result.passed else f" ({result.failure_message()})")
                for result in self.build.contracts
            ),
            *([] if self.build.contracts else ["No mart was built, so no contract ran."]),
            "",
            "### Data diff against production",
            *markdown(self.diffs),
            "",
            "### Result",
            *(["Passed."] if self.ok else [f"- {line}" for line in self.failures()]),
        ]
        return "\n".join(lines) + "\n"

    def as_json(self) -> dict[str, Any]:
        return {
            "prefix": self.build.prefix,
            "base": self.base,
            "passed": self.ok,
            "built": self.built_names(),
            "failed_nodes": self.build.failed_nodes,
            "contracts": [
                {
                    "table": result.dataset,
                    "passed": result.passed,
                    "failure": result.failure_message() or None,
                }
                for result in self.build.contracts
            ],
            "max_changed_percent": self.max_changed_percent,
            "diffs": [diff.as_json() for diff in self.diffs],
            "failures": self.failures(),
        }


def report_changes(build: ChangeBuild, base: str, max_changed_percent: float | None = None) -> ChangeReport:
    """Diff every model the build made against production."""
    diffs = diff_models(build.settings, build.manifest, build.deferral, build.built_models)
    return ChangeReport(build, diffs, base, max_changed_percent)
