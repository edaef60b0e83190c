"""The per-source schema policy for fields that change type (evolve / discard / freeze)."""

from __future__ import annotations

import pytest

from dlt_sources.common.schema_policy import check_policy, enforce
from dlt_sources.errors import SourceError
from dlt_sources.github.helpers import page_to_arrow

DECLARED = {"id": "bigint", "amount": "bigint", "title": "text", "closed_at": "timestamp", "meta": "json"}
ROWS = [
    {"id": 1, "amount": 100, "title": "ok", "closed_at": "2026-01-01T00:00:00Z", "meta": {"a": 1}},
    {"id": 2, "amount": "100.50", "title": "drifted", "closed_at": None, "meta": [1, 2]},
]


def test_evolve_moves_the_value_to_a_variant_column() -> None:
    rows = enforce("demo", "things", ROWS, DECLARED, "evolve")
    assert rows[0] == ROWS[0]
    assert "amount" not in rows[1] and rows[1]["amount__v_text"] == "100.50"


def test_discard_drops_the_value_and_keeps_the_row() -> None:
    rows = enforce("demo", "things", ROWS, DECLARED, "discard")
    assert [r["id"] for r in rows] == [1, 2]
    assert "amount" not in rows[1] and not any(key.startswith("amount__v") for key in rows[1])


def test_freeze_names_source_table_and_column() -> None:
    with pytest.raises(SourceError, match=r"demo source: table `things`, column `amount` changed type"):
        enforce("demo", "things", ROWS, DECLARED, "freeze")


def test_unknown_policy_names_the_setting() -> None:
    with pytest.raises(SourceError, match=r"sources\.github\.schema_policy"):
        check_policy("github", "strict")


def _issue(number: int, comments: object) -> dict:
    return {
        "id": number,
        "number": number,
        "title": f"issue {number}",
        "state": "open",
        "comments": comments,
        "user": {"login": "octocat"},
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-02T00:00:00Z",
    }


def test_github_pages_follow_the_policy() -> None:
    page = [_issue(1, 3), _issue(2, "three")]
    table = page_to_arrow("issues", "octo/repo", page, "evolve")
    assert table.column("comments").to_pylist() == [3, None]
    assert table.column("comments__v_text").to_pylist() == [None, "three"]
    with pytest.raises(SourceError, match=r"github source: table `issues`, column `comments`"):
        page_to_arrow("issues", "octo/repo", page, "freeze")
