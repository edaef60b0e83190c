"""A REST API added with one YAML file and no Python, loaded through a real dlt pipeline.

The tickets stand-in (standins/rest_api.py) serves on 127.0.0.1; the YAML is written
into a temp folder that ``ELT_REST_SOURCES_DIR`` points the loader at. Pins: the first
run loads everything as typed columns, the second only the new and changed tickets
(filtered by the API via ``updated_since``), an unchanged third run loads nothing.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dlt
import duckdb
import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from dlt_sources.common.http import ApiAuthError
from dlt_sources.registry import SOURCES
from dlt_sources.rest import declared_sources
from flows.ingest import source_error_in
from standins.rest_api import T0, TicketStore, iso, serve_tickets, ticket

TOKEN = "helpdesk-token-1234"
N = 2_500
PAGE = 400

YAML = textwrap.dedent(
    """
    client:
      base_url: "{{ config.sources.helpdesk.base_url }}"
      auth: {type: bearer, token: "{{ secrets.sources.helpdesk.token }}"}
      paginator: {type: cursor, cursor_path: next_cursor, cursor_param: cursor}
    resource_defaults:
      primary_key: id
      write_disposition: merge
    resources:
      - name: tickets
        endpoint:
          path: tickets
          params: {limit: PAGE}
          data_selector: data
          incremental:
            start_param: updated_since
            cursor_path: updated_at
            initial_value: "2025-06-01T00:00:00Z"
        columns:
          id: {data_type: bigint, nullable: false}
          requester: {data_type: json}
          tags: {data_type: json}
          created_at: {data_type: timestamp}
          updated_at: {data_type: timestamp, nullable: false}
    """
).replace("PAGE", str(PAGE))


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNTIME__DLTHUB_TELEMETRY", "false")
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "dlt_data"))
    monkeypatch.chdir(tmp_path)  # dlt reads ./.dlt/*.toml


@pytest.fixture
def store() -> TicketStore:
    return TicketStore(N)


@pytest.fixture
def api(store: TicketStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    folder = tmp_path / "rest"
    folder.mkdir()
    (folder / "helpdesk.yml").write_text(YAML)
    monkeypatch.setenv("ELT_REST_SOURCES_DIR", str(folder))
    with serve_tickets(store, TOKEN) as url:
        monkeypatch.setenv("SOURCES__HELPDESK__BASE_URL", url)
        monkeypatch.setenv("SOURCES__HELPDESK__TOKEN", TOKEN)
        yield url


def pipeline(tmp_path: Path) -> dlt.Pipeline:
    return dlt.pipeline(
        pipeline_name="helpdesk",
        destination=dlt.destinations.duckdb(str(tmp_path / "warehouse.duckdb")),
        dataset_name="raw_helpdesk",
        pipelines_dir=str(tmp_path / "pipelines"),
    )


def run(p: dlt.Pipeline) -> int:
    p.run(declared_sources()["helpdesk"].factory(), loader_file_format="parquet").raise_on_failed_jobs()
    return p.last_trace.last_normalize_info.row_counts.get("tickets", 0)


def query(tmp_path: Path, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_yaml_source_loads_then_loads_only_changes(api: str, store: TicketStore, tmp_path: Path) -> None:
    p = pipeline(tmp_path)

    # 1) first run: every ticket, typed, nested values as JSON
    assert run(p) == N
    assert query(tmp_path, "select count(*), count(distinct id) from raw_helpdesk.tickets") == [(N, N)]
    types = dict(
        query(
            tmp_path,
            "select column_name, data_type from information_schema.columns "
            "where table_schema = 'raw_helpdesk' and table_name = 'tickets'",
        )
    )
    assert types["id"] == "BIGINT"
    assert types["requester"] == "JSON" and types["tags"] == "JSON"
    assert types["updated_at"] == "TIMESTAMP WITH TIME ZONE"
    assert query(tmp_path, "select requester->>'email', tags from raw_helpdesk.tickets where id = 8") == [
        ("user7@example.com", '["billing","bug"]')
    ]

    # 2) three tickets change and two are created: only those five load, and the API
    #    is asked only for tickets updated since the stored cursor (one page)
    later = iso(T0 + N)
    changed = [{**ticket(i), "status": "solved", "updated_at": later} for i in (3, 10, 2_000)]
    created = [{**ticket(N + i), "updated_at": later} for i in range(2)]
    store.upsert(changed + created)
    served = store.requests_served
    assert run(p) == 5
    assert store.requests_served - served == 1
    assert query(tmp_path, "select count(*) from raw_helpdesk.tickets") == [(N + 2,)]
    assert query(tmp_path, "select id, status from raw_helpdesk.tickets where id in (4, 11) order by id") == [
        (4, "solved"),
        (11, "solved"),
    ]

    # 3) unchanged: nothing loads (the boundary tickets are read again and dropped)
    assert run(p) == 0
    assert query(tmp_path, "select count(*) from raw_helpdesk.tickets") == [(N + 2,)]

    # the token is not persisted anywhere in the pipeline's files
    for path in Path(p.pipelines_dir).rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path


def test_rejected_token_fails_naming_the_setting(api: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SOURCES__HELPDESK__TOKEN", "wrong-token")
    with pytest.raises(Exception) as err:
        run(pipeline(tmp_path))
    cause = source_error_in(err.value)
    assert isinstance(cause, ApiAuthError)
    assert "sources.helpdesk.token" in str(cause) and "wrong-token" not in str(cause)


def test_missing_secret_names_the_environment_variable(api: str, monkeypatch) -> None:
    monkeypatch.delenv("SOURCES__HELPDESK__TOKEN")
    with pytest.raises(Exception, match="SOURCES__HELPDESK__TOKEN"):
        declared_sources()["helpdesk"].factory()


def test_the_flows_registry_includes_the_shipped_yaml() -> None:
    assert "example_tickets" in SOURCES


def test_a_key_repeated_in_one_run_is_still_merged_once(
    api: str, store: TicketStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The merge skips dlt's de-duplication only when every key arrived once in the run."""
    p = pipeline(tmp_path)
    serve_page = store.page

    def update_while_paging(version: dict[str, Any]) -> None:
        """Upsert ``version`` just before the run's second page: the feed then holds its id twice."""
        calls = 0

        def page(params: dict[str, str]) -> bytes:
            nonlocal calls
            calls += 1
            if calls == 2:
                store.upsert([version])
            return serve_page(params)

        monkeypatch.setattr(store, "page", page)

    def deduplicated_hint() -> Any:
        return p.default_schema.get_table("tickets").get("x-stage-data-deduplicated")

    def distinct() -> list[tuple[Any, ...]]:
        return query(tmp_path, "select count(*), count(distinct id) from raw_helpdesk.tickets")

    # 1) ticket 1 (first page) changes while we page: read twice, merged once, newest kept
    update_while_paging({**ticket(0), "status": "closed", "updated_at": iso(T0 + N)})
    assert run(p) == N + 1
    assert deduplicated_hint() is False
    assert distinct() == [(N, N)]
    assert query(tmp_path, "select status from raw_helpdesk.tickets where id = 1") == [("closed",)]

    # 2) every key once: the de-duplication is skipped
    monkeypatch.setattr(store, "page", serve_page)
    store.upsert([{**ticket(i), "status": "open", "updated_at": iso(T0 + N + 1)} for i in range(PAGE + 10)])
    assert run(p) == PAGE + 10
    assert deduplicated_hint() is True
    assert distinct() == [(N, N)]

    # the hint set on the last batch left the other table hints alone
    table = p.default_schema.get_table("tickets")
    assert table["write_disposition"] == "merge"
    assert table["columns"]["id"].get("primary_key") and table["columns"]["id"]["data_type"] == "bigint"
    assert table["columns"]["updated_at"].get("dedup_sort") == "desc"

    # 3) a repeat again: the True of the last run does not outlive it
    store.upsert(
        [{**ticket(i), "status": "pending", "updated_at": iso(T0 + N + 2)} for i in range(PAGE + 10)]
    )
    update_while_paging({**ticket(1), "status": "solved", "updated_at": iso(T0 + N + 3)})
    assert run(p) == PAGE + 11
    assert deduplicated_hint() is False
    assert distinct() == [(N, N)]
    assert query(tmp_path, "select status from raw_helpdesk.tickets where id = 2") == [("solved",)]


@pytest.mark.parametrize("policy", ["evolve", "discard", "freeze"])
def test_a_field_changing_type_follows_the_schema_policy(
    policy: str, store: TicketStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a source whose `id` is declared bigint and the policy in its YAML
    folder = tmp_path / "rest"
    folder.mkdir()
    (folder / "helpdesk.yml").write_text(f"schema_policy: {policy}\n" + YAML)
    monkeypatch.setenv("ELT_REST_SOURCES_DIR", str(folder))
    p = pipeline(tmp_path)
    with serve_tickets(store, TOKEN) as url:
        monkeypatch.setenv("SOURCES__HELPDESK__BASE_URL", url)
        monkeypatch.setenv("SOURCES__HELPDESK__TOKEN", TOKEN)
        assert run(p) == N
        # WHEN a ticket arrives whose `created_at` is no longer a timestamp but a number
        store.upsert([{**ticket(5), "created_at": 1_750_000_000, "updated_at": iso(T0 + N)}])
        if policy == "freeze":
            # THEN freeze fails naming source, table and column, and nothing is lost
            with pytest.raises(PipelineStepFailed) as failure:
                run(p)
            error = source_error_in(failure.value)
            assert error is not None
            assert "helpdesk source: table `tickets`, column `created_at` changed type" in str(error)
            assert query(tmp_path, "select count(*) from raw_helpdesk.tickets") == [(N,)]
            return
        assert run(p) == 1
    columns = {
        name
        for (name,) in query(
            tmp_path, "select column_name from information_schema.columns where table_name = 'tickets'"
        )
    }
    # evolve keeps the value in a variant column; discard drops it and keeps the row
    assert ("created_at__v_bigint" in columns) is (policy == "evolve")
    assert query(tmp_path, "select created_at is null from raw_helpdesk.tickets where id = 6") == [(True,)]
