"""Validation of database files: every mistake names the file, the table and the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dlt_sources.sql_database.config import SqlConfigError, parse

FILE = Path("dlt_sources/sql_database/inventory.yml")
CREDENTIALS = "{{ secrets.sources.inventory.credentials }}"


def config(*tables: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"credentials": CREDENTIALS, "tables": list(tables), **top}


def test_a_valid_file_parses_with_defaults():
    parsed = parse(
        config(
            {"name": "products", "primary_key": "id", "cursor": "updated_at", "partitions": 4},
            {"name": "links", "primary_key": ["a", "b"], "exclude_columns": "note", "filter": " x > 1 "},
        ),
        FILE,
    )
    products, links = parsed.tables
    assert parsed.name == "inventory" and parsed.backend == "auto"
    assert (products.write_disposition, products.partition_column, products.cursor_tiebreak) == (
        "merge",
        "id",
        True,
    )
    assert (links.write_disposition, links.exclude_columns, links.filter) == ("replace", ("note",), "x > 1")
    assert links.primary_key == ("a", "b") and links.partition_column is None


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (config({"name": "t", "primary_key": "id"}, backend="odbc"), "`backend` must be one of"),
        ({"credentials": "postgresql://u:pw@h/db", "tables": []}, "`credentials` must be a placeholder"),
        (config(), "`tables` must be a non-empty list"),
        (config({"name": "t", "primary_key": "id", "colour": 1}), "table `t`: unknown field(s) colour"),
        (config({"name": "t"}), "table `t`: `primary_key` is required"),
        (
            config({"name": "t", "primary_key": "id", "initial_value": 1}),
            "table `t`: `initial_value` needs a",
        ),
        (
            config({"name": "t", "primary_key": "id", "cursor": "u", "exclude_columns": ["u"]}),
            "table `t`: `exclude_columns` cannot exclude the primary key or the cursor (u)",
        ),
        (config({"name": "t", "primary_key": "id", "partitions": 0}), "table `t`: `partitions` must be"),
        (
            config({"name": "t", "primary_key": ["a", "b"], "partitions": 2}),
            "table `t`: `partitions` needs `partition_column`",
        ),
        (config({"name": "t", "primary_key": "id", "filter": ""}), "table `t`: `filter` must be"),
        (
            config({"name": "t", "primary_key": "id"}, {"name": "t", "primary_key": "id"}),
            "table(s) listed twice: t",
        ),
        (config({"primary_key": "id"}), "tables[0]: `name` must be"),
    ],
)
def test_mistakes_name_the_file_the_table_and_the_field(document: dict[str, Any], message: str):
    with pytest.raises(SqlConfigError) as caught:
        parse(document, FILE)
    assert str(caught.value).startswith(str(FILE))
    assert message in str(caught.value)


def test_the_tiebreak_needs_a_one_column_key():
    parsed = parse(config({"name": "t", "primary_key": ["a", "b"], "cursor": "u"}), FILE)
    assert parsed.tables[0].cursor_tiebreak is False
