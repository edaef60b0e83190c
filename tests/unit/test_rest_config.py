"""Validation of declarative REST source files, placeholders, paginators and the Arrow fast path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml

from dlt_sources.common.arrow import records_to_arrow
from dlt_sources.rest import DEFAULT_DIR, declared_sources
from dlt_sources.rest.config import RestConfigError, load_file, parse, resolve_placeholders
from dlt_sources.rest.paginators import Cursor, JsonLink, Offset, PageNumber, get_path, make_paginator

VALID: dict[str, Any] = {
    "client": {
        "base_url": "https://api.example.com/v1",
        "auth": {"type": "bearer", "token": "{{ secrets.sources.helpdesk.token }}"},
        "paginator": {"type": "cursor", "cursor_path": "next_cursor", "cursor_param": "cursor"},
    },
    "resource_defaults": {"primary_key": "id", "write_disposition": "merge"},
    "resources": [
        {
            "name": "tickets",
            "endpoint": {
                "path": "tickets",
                "data_selector": "data",
                "incremental": {"start_param": "updated_since", "cursor_path": "updated_at"},
            },
        }
    ],
}


def write(tmp_path: Path, doc: Any, name: str = "helpdesk") -> Path:
    path = tmp_path / f"{name}.yml"
    path.write_text(yaml.safe_dump(doc))
    return path


def with_change(path: str, value: Any) -> dict[str, Any]:
    """VALID with one dotted path set (list indexes as digits)."""
    doc = yaml.safe_load(yaml.safe_dump(VALID))
    *parents, last = path.split(".")
    node: Any = doc
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    node[int(last) if last.isdigit() else last] = value
    return doc


def test_the_shipped_example_is_valid_and_declared() -> None:
    config = load_file(DEFAULT_DIR / "example_tickets.yml")
    (tickets,) = config.resources
    assert (tickets.name, tickets.write_disposition, tickets.primary_key) == ("tickets", "merge", "id")
    assert tickets.incremental is not None and tickets.incremental.start_param == "updated_since"
    assert tickets.params == {"limit": 1000}  # from resource_defaults
    assert "example_tickets" in declared_sources(DEFAULT_DIR)


def test_a_valid_file_parses(tmp_path: Path) -> None:
    config = load_file(write(tmp_path, VALID))
    assert config.name == "helpdesk"
    assert config.resources[0].incremental.cursor_path == "updated_at"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [
        ("rate_limit", 5, "`rate_limit`"),
        ("client.session", {}, "`client.session`"),
        ("resources.0.endpoint.method", "POST", "`resources[tickets].endpoint.method`"),
        ("resources.0.processing_steps", [], "`resources[0].processing_steps`"),
        ("client.paginator", {"type": "cursor", "cursor_pth": "x"}, "`client.paginator.cursor_pth`"),
        ("client.paginator", {"type": "magic"}, "`client.paginator.type`"),
        ("client.auth", {"type": "oauth2_client_credentials"}, "`client.auth.type`"),
        ("client.auth", {"type": "bearer"}, "`client.auth.token`"),
        ("client.auth", {"type": "api_key", "api_key": "x", "location": "cookie"}, "`client.auth.location`"),
        ("resource_defaults.primary_key", None, "`resources[tickets].primary_key`"),
        ("resources.0.write_disposition", "upsert", "`resources[tickets].write_disposition`"),
        ("resources.0.endpoint.incremental.cursor_path", "meta.updated", "cursor_path"),
        ("resources.0.endpoint.incremental.lag", 5, "`resources[tickets].endpoint.incremental.lag`"),
        ("resources.0.columns", {"x": {"data_type": "wide"}}, "`resources[tickets].columns.x.data_type`"),
        ("resources", [], "`resources`"),
        ("client.base_url", None, "`client.base_url`"),
        ("client.paginator", {"type": "offset"}, "`client.paginator.limit`"),
    ],
)
def test_unsupported_or_invalid_keys_name_the_file_and_key(
    tmp_path: Path, path: str, value: Any, named: str
) -> None:
    file = write(tmp_path, with_change(path, value))
    with pytest.raises(RestConfigError) as err:
        load_file(file)
    assert str(file) in str(err.value)
    assert named in str(err.value)


def test_file_names_must_be_dataset_safe(tmp_path: Path) -> None:
    with pytest.raises(RestConfigError, match="lower-case"):
        load_file(write(tmp_path, VALID, name="Help-Desk"))


def test_invalid_yaml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.yml"
    path.write_text("client: [unclosed")
    with pytest.raises(RestConfigError, match=r"broken\.yml: not valid YAML"):
        load_file(path)


def test_dlt_incremental_param_form_is_accepted(tmp_path: Path) -> None:
    doc = with_change("resources.0.endpoint.incremental", None)
    del doc["resources"][0]["endpoint"]["incremental"]
    doc["resources"][0]["endpoint"]["params"] = {
        "since": {"type": "incremental", "cursor_path": "updated_at", "initial_value": "2024-01-01"},
        "limit": 50,
    }
    (resource,) = parse(doc, tmp_path / "x.yml").resources
    assert resource.params == {"limit": 50}
    assert resource.incremental is not None
    assert (resource.incremental.start_param, resource.incremental.initial_value) == ("since", "2024-01-01")


def test_string_shorthands(tmp_path: Path) -> None:
    doc = {"client": {"base_url": "https://x.test", "paginator": "header_link"}, "resources": ["users"]}
    (resource,) = parse(doc, tmp_path / "x.yml").resources
    assert (resource.name, resource.path, resource.write_disposition) == ("users", "users", "append")


def test_declared_sources_reads_the_configured_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, VALID)
    write(tmp_path, with_change("resources.0.name", "users"), name="crm")
    monkeypatch.setenv("ELT_REST_SOURCES_DIR", str(tmp_path))
    assert sorted(declared_sources()) == ["crm", "helpdesk"]


def test_placeholders_resolve_through_dlt_and_missing_ones_name_the_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SOURCES__HELPDESK__TOKEN", "s3cret")
    value = {"auth": {"token": "{{ secrets.sources.helpdesk.token }}"}, "n": 1}
    assert resolve_placeholders(value, "f.yml") == {"auth": {"token": "s3cret"}, "n": 1}
    monkeypatch.delenv("SOURCES__HELPDESK__TOKEN")
    with pytest.raises(RestConfigError) as err:
        resolve_placeholders(value, "f.yml")
    assert "SOURCES__HELPDESK__TOKEN" in str(err.value) and "f.yml" in str(err.value)


# ------------------------------------------------------------------ paginators
class _Response:
    def __init__(self, url: str = "https://x.test/v1/items?page=1", links: dict[str, Any] | None = None):
        self.url = url
        self.links = links or {}


def test_get_path() -> None:
    body = {"a": {"b": [{"c": 1}]}}
    assert get_path(body, "a.b.0.c") == 1
    assert get_path(body, "$.a.b.0.c") == 1
    assert get_path(body, "a.x") is None
    assert get_path(body, "$") is body


def test_cursor_paginator_keeps_params_and_stops_without_cursor() -> None:
    pager = Cursor("meta.next", "after")
    nxt = pager.advance("items", {"limit": 2}, _Response(), {"meta": {"next": "abc"}}, 2)
    assert nxt == ("items", {"limit": 2, "after": "abc"})
    assert pager.advance("items", {"limit": 2}, _Response(), {"meta": {"next": None}}, 2) is None


def test_json_link_resolves_relative_urls() -> None:
    nxt = JsonLink("next").advance("items", {"a": 1}, _Response(), {"next": "/v1/items?page=2"}, 1)
    assert nxt == ("https://x.test/v1/items?page=2", None)


def test_offset_paginator_stops_at_total_and_on_empty_pages() -> None:
    pager = Offset(limit=10)
    url, params = pager.first("items", {})
    assert params == {"limit": 10, "offset": 0}
    page = {"total": 25}
    assert pager.advance(url, params, _Response(), page, 10) == ("items", {"limit": 10, "offset": 10})
    assert pager.advance(url, params, _Response(), page, 10) == ("items", {"limit": 10, "offset": 20})
    assert pager.advance(url, params, _Response(), {"total": 25}, 5) is None
    assert Offset(limit=10, total_path=None).advance("i", {}, _Response(), {}, 0) is None


def test_page_number_paginator_counts_pages_from_base() -> None:
    pager = PageNumber(base_page=1, total_path="pages")
    url, params = pager.first("items", {})
    assert params == {"page": 1}
    assert pager.advance(url, params, _Response(), {"pages": 2}, 3) == ("items", {"page": 2})
    assert pager.advance(url, params, _Response(), {"pages": 2}, 3) is None


def test_no_paginator_is_one_page() -> None:
    assert make_paginator(None).advance("i", {}, _Response(), {"next": "x"}, 5) is None


# ------------------------------------------------------------ records_to_arrow
def test_records_to_arrow_keeps_every_key_and_serialises_nested_values() -> None:
    table = records_to_arrow([{"a": 1, "b": {"x": 1}}, {"a": 2, "b": None, "c": "z"}])
    assert table.column_names == ["a", "b", "c"]
    assert table.to_pylist() == [{"a": 1, "b": '{"x":1}', "c": None}, {"a": 2, "b": None, "c": "z"}]


@pytest.mark.parametrize(
    "records",
    [
        [{"a": 1, "b": 2}, {"a": 3, "c": 4}],  # same number of keys, another key
        [{"a": 1, "b": 2}, {"a": 3, "b": 4, "c": 5}, {"a": 6}],  # key counts that add up
        [{"a": 1}, {"b": 2, "a": 3}],  # a key only in a later record
    ],
)
def test_records_to_arrow_finds_keys_missing_from_the_first_record(records: list[dict[str, Any]]) -> None:
    table = records_to_arrow(records)
    names = list(dict.fromkeys(key for record in records for key in record))
    assert table.column_names == names
    assert table.to_pylist() == [{name: record.get(name) for name in names} for record in records]


def test_records_to_arrow_json_columns_and_mixed_values() -> None:
    table = records_to_arrow([{"t": None, "m": "s"}, {"t": [1], "m": {"k": 1}}], json_columns=["t"])
    assert table.schema.field("t").type == pa.string()
    assert table.column("t").to_pylist() == [None, "[1]"]
    assert table.column("m").to_pylist() == ['"s"', '{"k":1}']


def test_records_to_arrow_pins_the_schema_and_appends_unknown_columns() -> None:
    schema = pa.schema([pa.field("id", pa.int64(), nullable=False), pa.field("note", pa.string())])
    table = records_to_arrow([{"zeta": 1.5, "id": 7, "alpha": True}], schema=schema)
    assert table.column_names == ["id", "note", "alpha", "zeta"]
    assert not table.schema.field("id").nullable
    assert table.to_pylist() == [{"id": 7, "note": None, "alpha": True, "zeta": 1.5}]
    assert records_to_arrow([], schema=schema).schema == schema
