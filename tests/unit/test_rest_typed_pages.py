"""The typed fast path of declarative REST sources: which pages take it, and what it yields."""

from __future__ import annotations

import orjson
import pyarrow as pa
import pytest

from dlt_sources.rest.typed_pages import PageDecoder, TypedPage

COLUMNS = {"id": "bigint", "name": "text", "score": "double", "meta": "json", "updated_at": "timestamp"}


def _body(records: list[dict], **extra: object) -> bytes:
    return orjson.dumps({"data": records, **extra})


def test_page_that_fits_the_columns_is_typed_with_the_paginator_fields() -> None:
    decoder = PageDecoder.for_resource(COLUMNS, "data", ["next_cursor"])
    assert decoder is not None
    records = [
        {"id": 1, "name": "a", "score": 2, "meta": {"k": [1, 2]}, "updated_at": "2025-01-01T00:00:00Z"},
        {"id": 2, "name": None, "meta": None},
    ]
    page = decoder.decode(_body(records, next_cursor="abc", total=2))
    assert isinstance(page, TypedPage)
    assert page.body == {"next_cursor": "abc"}
    table = decoder.to_arrow(page.records)
    assert table.schema.field("id").type == pa.int64()
    assert table.column("meta").to_pylist() == ['{"k":[1,2]}', None]
    assert table.column("score").to_pylist() == [2.0, None]  # a JSON int in a double column
    assert table.column("updated_at").to_pylist() == ["2025-01-01T00:00:00Z", None]


@pytest.mark.parametrize(
    "record",
    [
        {"id": 1, "name": "a", "new_field": 1},  # a field that is not declared: a new column
        {"id": "1", "name": "a"},  # a value of another type: the schema policy decides
        {"id": 1.5},
    ],
)
def test_page_that_does_not_fit_falls_back_to_the_generic_body(record: dict) -> None:
    decoder = PageDecoder.for_resource(COLUMNS, "data", [])
    assert decoder is not None
    body = decoder.decode(_body([record]))
    assert body == {"data": [record]}


def test_invalid_json_raises_orjsons_error_so_the_client_retries_it() -> None:
    decoder = PageDecoder.for_resource(COLUMNS, "data", [])
    assert decoder is not None
    with pytest.raises(orjson.JSONDecodeError):
        decoder.decode(_body([{"id": 1}])[:-7])


def test_nested_selector_and_paginator_path_share_a_parent() -> None:
    decoder = PageDecoder.for_resource({"id": "bigint"}, "$.result.items", ["result.next.url"])
    assert decoder is not None
    page = decoder.decode(orjson.dumps({"result": {"items": [{"id": 7}], "next": {"url": "/p2"}}}))
    assert isinstance(page, TypedPage)
    assert page.body == {"result": {"next": {"url": "/p2"}}}
    assert decoder.to_arrow(page.records).column("id").to_pylist() == [7]
    empty = decoder.decode(orjson.dumps({"result": {}}))
    assert isinstance(empty, TypedPage)
    assert empty.records == []
    assert empty.body == {"result": {}}


@pytest.mark.parametrize(
    ("columns", "selector", "paths"),
    [
        ({}, "data", []),  # nothing declared: nothing to type
        (COLUMNS, None, []),  # records found by looking at the body
        (COLUMNS, "$", []),  # the body is the list
        (COLUMNS, "data[*]", []),  # JSONPath beyond plain keys
        (COLUMNS, "data", ["data"]),  # a paginator reading the records' own field
        ({"id": "decimal"}, "data", []),  # a type the fast path does not build
    ],
)
def test_resources_outside_the_fast_path_get_no_decoder(
    columns: dict[str, str], selector: str | None, paths: list[str]
) -> None:
    assert PageDecoder.for_resource(columns, selector, paths) is None
