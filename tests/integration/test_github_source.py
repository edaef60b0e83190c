"""The GitHub dlt source against the local stand-in, through real dlt pipelines into DuckDB.

Pins what other layers rely on: merge on `id` with a `repository` column, incremental
`since`/early-stop cursors that pick up exactly the new and changed objects, 304s for
unchanged lists, rate limits waited out, a faulty server still yielding exactly the
store's truth, and secret-free errors.
"""

from __future__ import annotations

import hashlib
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dlt
import duckdb
import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from dlt_sources.common.http import ApiAuthError
from dlt_sources.github import GitHubRateLimited, github_source
from standins.github_api import GitHubStore, serve_github

pytestmark = pytest.mark.slow

TOKEN = "ghp_integrationSecretToken4242"
REPOS = ("octo-org/octo-repo", "octo-org/widgets")
TABLES = ("issues", "pull_requests", "issue_comments", "releases")
CURSOR = {"issues": "updated_at", "pull_requests": "updated_at", "issue_comments": "updated_at"}

DATASET = "raw_github"  # read by the make_pipeline fixture in conftest.py
PipelineFactory = Callable[[str], dlt.Pipeline]


@pytest.fixture(autouse=True)
def _isolated_dlt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNTIME__DLTHUB_TELEMETRY", "false")
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "dlt_data"))
    for name in ("ACCESS_TOKEN", "BASE_URL", "REPOSITORIES"):
        monkeypatch.delenv(f"SOURCES__GITHUB__{name}", raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def store() -> GitHubStore:
    return GitHubStore(11).seed(60, repos=REPOS, n_pulls=20, n_comments=90, n_releases=4)


@pytest.fixture
def base_url(store: GitHubStore) -> Iterator[str]:
    with serve_github(store, TOKEN) as url:
        yield url


def source(base_url: str, **options: Any) -> Any:
    options.setdefault("backoff_factor", 0.01)
    return github_source(repositories=list(REPOS), access_token=TOKEN, base_url=base_url, **options)


def run(pipeline: dlt.Pipeline, src: Any) -> dict[str, int]:
    pipeline.run(src, loader_file_format="parquet")
    counts = pipeline.last_trace.last_normalize_info.row_counts
    return {t: n for t, n in counts.items() if not t.startswith("_dlt")}


def query(db_path: Path, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(db_path), read_only=True) as con:
        return con.execute(sql).fetchall()


def _digest(*values: Any) -> str:
    return hashlib.md5("|".join("" if v is None else str(v) for v in values).encode()).hexdigest()


def loaded(db_path: Path, table: str) -> dict[int, str]:
    """id -> fingerprint of what the warehouse holds (repository, cursor, title/body/state)."""
    stamp = "created_at" if table == "releases" else "updated_at"
    text = {"issues": "title, state", "pull_requests": "title, state", "issue_comments": "body, null"}.get(
        table, "tag_name, name"
    )
    rows = query(
        db_path,
        f"select id, repository, strftime({stamp} at time zone 'UTC', '%Y-%m-%dT%H:%M:%SZ'), {text} "
        f"from raw_github.{table}",
    )
    return {row[0]: _digest(*row[1:]) for row in rows}


def truth(store: GitHubStore, table: str) -> dict[int, str]:
    stamp = "created_at" if table == "releases" else "updated_at"
    fields = {"issues": ("title", "state"), "pull_requests": ("title", "state"), "issue_comments": ("body",)}
    text = fields.get(table, ("tag_name", "name"))
    out = {}
    for repo in REPOS:
        for obj in store.truth(repo, table):
            values = [obj[f] for f in text] + ([None] if table == "issue_comments" else [])
            out[obj["id"]] = _digest(repo, obj[stamp], *values)
    return out


def assert_matches_truth(store: GitHubStore, db_path: Path) -> None:
    for table in TABLES:
        assert loaded(db_path, table) == truth(store, table), table
        assert query(db_path, f"select count(*) = count(distinct id) from raw_github.{table}") == [(True,)]


def test_full_then_incremental_loads(
    store: GitHubStore, base_url: str, make_pipeline: PipelineFactory, db_path: Path
) -> None:
    pipeline = make_pipeline("github_incremental")
    expected = {table: store.count(table) for table in TABLES}
    assert run(pipeline, source(base_url)) == expected
    assert_matches_truth(store, db_path)

    # shape: typed columns, JSON nested objects, flat helpers, PRs kept in issues
    types = dict(
        query(
            db_path,
            "select column_name, data_type from information_schema.columns "
            "where table_schema = 'raw_github' and table_name = 'issues'",
        )
    )
    assert types["id"] == "BIGINT" and types["user"] == "JSON" and types["labels"] == "JSON"
    assert types["updated_at"] == "TIMESTAMP WITH TIME ZONE" and types["is_pull_request"] == "BOOLEAN"
    assert "_dlt_id" not in types  # Arrow loads: only _dlt_load_id
    n_prs = store.count("pull_requests")
    assert query(db_path, "select count(*) from raw_github.issues where is_pull_request") == [(n_prs,)]
    assert query(
        db_path,
        "select count(*) from raw_github.issues where user_login = user->>'login' and repository <> ''",
    ) == [(store.count("issues"),)]
    assert query(db_path, "select count(*) from raw_github.pull_requests where head_ref = head->>'ref'") == [
        (n_prs,)
    ]
    assert query(
        db_path, "select count(*) from information_schema.tables where table_name like 'issues__%'"
    ) == [(0,)]  # max_table_nesting=0: no child tables

    # 1) an issue edit is found through `since`
    plain = next(obj for obj in store.truth(REPOS[0], "issues") if "pull_request" not in obj)
    store.edit_issue(REPOS[0], plain["number"], title="Edited title", state="closed")
    assert run(pipeline, source(base_url)) == {"issues": 1}
    assert query(db_path, f"select title, state from raw_github.issues where id = {plain['id']}") == [
        ("Edited title", "closed")
    ]
    since_params = [e.params.get("since") for e in store.log if e.path.endswith("/issues")][-2:]
    assert all(since_params)  # the cursor went out as `since`

    # 2) a new comment (which also bumps its issue's updated_at, as on GitHub)
    comment = store.add_comment(REPOS[1], 3, "a new comment")
    assert run(pipeline, source(base_url)) == {"issue_comments": 1, "issues": 1}
    assert query(
        db_path, f"select body, issue_number from raw_github.issue_comments where id = {comment['id']}"
    ) == [("a new comment", 3)]

    # 3) a new release (releases have no `since`: read newest first, stop at the cursor)
    release = store.add_release(REPOS[0], "v9.9.9")
    assert run(pipeline, source(base_url)) == {"releases": 1}
    assert query(db_path, f"select tag_name from raw_github.releases where id = {release['id']}") == [
        ("v9.9.9",)
    ]
    assert_matches_truth(store, db_path)

    # 4) nothing changed: every list is a conditional request answered 304, costing nothing
    served, used = len(store.log), store.rate_limit_used
    assert run(pipeline, source(base_url)) == {}
    requests = store.log[served:]
    assert len(requests) == len(TABLES) * len(REPOS)
    assert all(entry.if_none_match and entry.status == 304 for entry in requests)
    assert store.rate_limit_used == used
    assert_matches_truth(store, db_path)

    schema = pipeline.default_schema
    assert schema.name == "github"
    for table in TABLES:
        assert schema.get_table(table)["write_disposition"] == "merge"
        assert schema.get_table_columns(table)["id"]["primary_key"] is True
    assert TOKEN not in str(pipeline.last_trace)
    for path in Path(pipeline.pipelines_dir).rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path


def test_a_repository_changed_while_the_next_one_is_listed_loses_nothing(
    store: GitHubStore, base_url: str, make_pipeline: PipelineFactory, db_path: Path
) -> None:
    """Each repository resumes from its own cursor.

    Found by the reliability campaign: with one cursor for all repositories, an issue of the
    first repository edited after its listing (and before the second one's, which brings a
    newer stamp) fell behind the shared cursor and was never loaded.
    """
    pipeline = make_pipeline("github_per_repo_cursor")
    run(pipeline, source(base_url))
    victim = next(obj for obj in store.truth(REPOS[0], "issues") if "pull_request" not in obj)
    edits: list[int] = []

    def between_repositories(repo: str, endpoint: str, page: int) -> None:
        # after the first repository's (only) page is cut, before the second one is listed
        if repo == REPOS[0] and endpoint == "issues" and not edits:
            edits.append(store.edit_issue(REPOS[0], victim["number"], title="edited in between")["id"])
            store.add_issue(REPOS[1], "newer than the edit")

    store.add_issue(REPOS[0], "something to list")
    store.add_issue(REPOS[1], "something to list")
    store.on_page.append(between_repositories)
    run(pipeline, source(base_url))
    assert edits
    run(pipeline, source(base_url))
    assert query(db_path, f"select title from raw_github.issues where id = {victim['id']}") == [
        ("edited in between",)
    ]
    assert_matches_truth(store, db_path)


def test_paging_edge_cases(make_pipeline: PipelineFactory, db_path: Path) -> None:
    """Small pages, an empty last page, overlapping pages and an issue edited mid-paging."""
    store = GitHubStore(5, repeat_boundary=True, empty_last_page=True).seed(
        40, repos=REPOS, n_pulls=12, n_comments=30, n_releases=3
    )
    victim = next(obj for obj in store.truth(REPOS[0], "issues") if "pull_request" not in obj)
    edits: list[int] = []

    def edit_once(repo: str, endpoint: str, page: int) -> None:
        if repo == REPOS[0] and endpoint == "issues" and page == 2 and not edits:
            edits.append(store.edit_issue(repo, victim["number"], title="moved while paging")["id"])

    store.on_page.append(edit_once)
    with serve_github(store, TOKEN) as url:
        pipeline = make_pipeline("github_edges")
        run(pipeline, source(url, page_size=5))
        assert edits  # the edit happened during the first listing
        assert query(db_path, "select count(*) = count(distinct id) from raw_github.issues") == [(True,)]
        run(pipeline, source(url, page_size=5))  # the moved issue is newer than the cursor
        assert_matches_truth(store, db_path)
        assert query(db_path, f"select title from raw_github.issues where id = {victim['id']}") == [
            ("moved while paging",)
        ]
        # pull requests: early stop, only the first page of each repo is read now
        store.edit_issue(
            REPOS[1], max(p["number"] for p in store.truth(REPOS[1], "pull_requests")), title="pr"
        )
        served = len(store.log)
        assert run(pipeline, source(url, page_size=5)) == {"issues": 1, "pull_requests": 1}
        pulls = [e for e in store.log[served:] if e.path.endswith("/pulls") and e.status == 200]
        assert [e.params.get("page", "1") for e in pulls] == ["1"]
        assert_matches_truth(store, db_path)


def test_rate_limits_are_waited_out(make_pipeline: PipelineFactory, db_path: Path) -> None:
    store = GitHubStore(2, rate_limit=6, rate_limit_window=0.15).seed(
        30, repos=REPOS, n_pulls=8, n_comments=20, n_releases=2
    )
    store.secondary_limit_next(2, status=403, retry_after=0.01)
    store.secondary_limit_next(1, status=429, retry_after=0.01)
    with serve_github(store, TOKEN) as url:
        # max_retries=0: rate-limit waits are not failed attempts
        run(make_pipeline("github_limits"), source(url, page_size=10, max_retries=0))
    assert store.primary_limited > 0 and store.secondary_limited == 3
    limited = [e for e in store.log if e.status == 403]
    assert len(limited) == store.primary_limited + 2
    assert_matches_truth(store, db_path)


def test_a_rate_limit_longer_than_the_cap_fails_transiently(
    store: GitHubStore, base_url: str, make_pipeline: PipelineFactory
) -> None:
    store.secondary_limit_next(1, status=403, retry_after=120)
    with pytest.raises(PipelineStepFailed) as info:
        run(make_pipeline("github_capped"), source(base_url, max_rate_limit_wait=1))
    error = info.value.__cause__.__cause__
    assert isinstance(error, GitHubRateLimited) and error.transient
    assert "sources.github.max_rate_limit_wait" in str(info.value)


def test_faulty_server_still_loads_exactly_the_truth(make_pipeline: PipelineFactory, db_path: Path) -> None:
    store = GitHubStore(21, fault_rate=0.2, fault_retry_after=0.01, timeout_delay=0.4).seed(
        60, repos=REPOS, n_pulls=20, n_comments=90, n_releases=4
    )
    with serve_github(store, TOKEN) as url:
        options = {"page_size": 10, "max_retries": 8, "request_timeout": 0.25}
        pipeline = make_pipeline("github_faults")
        run(pipeline, source(url, **options))
        assert_matches_truth(store, db_path)
        for number in (2, 5, 9):
            store.edit_issue(REPOS[0], number, title=f"edit {number}")
        store.add_comment(REPOS[1], 4)
        store.add_pull_request(REPOS[1], "late PR")
        store.add_release(REPOS[1], "v2.0.0")
        run(pipeline, source(url, **options))
        assert_matches_truth(store, db_path)
    # seeded, so the same faults every run: slow answers, cut bodies, 429s and 5xx
    assert {"timeout", "truncated", "429"} <= set(store.faults_served)
    assert {"500", "502"} & set(store.faults_served)
    assert sum(store.faults_served.values()) >= 8
    counts = {t: query(db_path, f"select count(*) from raw_github.{t}")[0][0] for t in TABLES}
    assert counts == {t: store.count(t) for t in TABLES}
    assert query(db_path, "select sum(comments) from raw_github.issues") == [
        (sum(i["comments"] for r in REPOS for i in store.truth(r, "issues")),)
    ]


def test_bad_token_fails_fast_without_leaking_it(
    store: GitHubStore, base_url: str, make_pipeline: PipelineFactory
) -> None:
    bad = "ghp_thisIsNotTheRightToken987654321"
    with pytest.raises(PipelineStepFailed) as info:
        run(
            make_pipeline("github_bad_token"),
            github_source(repositories=list(REPOS), access_token=bad, base_url=base_url),
        )
    message = str(info.value)
    assert "sources.github.access_token" in message
    assert "SOURCES__GITHUB__ACCESS_TOKEN" in message
    assert "401" in message
    full = "".join(traceback.format_exception(info.value))
    assert bad not in full and bad[-10:] not in full
    assert isinstance(info.value.__cause__.__cause__, ApiAuthError)
    assert len(store.log) == 1  # no retries


def test_configured_through_environment(
    store: GitHubStore, base_url: str, make_pipeline: PipelineFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCES__GITHUB__ACCESS_TOKEN", TOKEN)
    monkeypatch.setenv("SOURCES__GITHUB__BASE_URL", base_url)
    monkeypatch.setenv("SOURCES__GITHUB__REPOSITORIES", f'["{REPOS[1]}"]')
    stamps = sorted(c["updated_at"] for c in store.truth(REPOS[1], "issue_comments"))
    initial_since = stamps[len(stamps) // 2]
    monkeypatch.setenv("SOURCES__GITHUB__INITIAL_SINCE", initial_since)
    pipeline = make_pipeline("github_env")
    rows = run(pipeline, github_source().with_resources("issue_comments"))
    expected = [c for c in store.truth(REPOS[1], "issue_comments") if c["updated_at"] >= initial_since]
    assert 0 < len(expected) < len(store.truth(REPOS[1], "issue_comments"))
    assert rows == {"issue_comments": len(expected)}


def test_raw_contracts_and_staging_models_pass_on_a_real_load(
    store: GitHubStore,
    base_url: str,
    make_pipeline: PipelineFactory,
    db_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    dbt_workspace: Path,
) -> None:
    """The Soda contracts and dbt staging models match what the source really writes."""
    from dbt.cli.main import dbtRunner

    from flows.checks import CHECKS_DIR, contract_paths, verify_contracts
    from flows.config import TRANSFORM_DIR
    from flows.results import Outcome
    from flows.transform import release_duckdb_connection

    run(make_pipeline("github_contracts"), source(base_url))
    monkeypatch.setenv("ELT_DUCKDB_PATH", str(db_path))

    contracts = contract_paths("raw", sources=["github"])
    assert [p.stem for p in contracts] == sorted(TABLES)
    for result in verify_contracts(contracts, CHECKS_DIR / "datasources" / "duckdb.yml"):
        assert result.passed, result.failure_message()
        assert {c.outcome for c in result.checks} == {Outcome.PASSED}  # schema really evaluated

    project = ["--project-dir", str(TRANSFORM_DIR), "--profiles-dir", str(TRANSFORM_DIR)]
    selection = ["--select", "staging.github"]
    result = dbtRunner().invoke(["build", *project, "--target", "duckdb", "--quiet", *selection])
    release_duckdb_connection()
    assert result.success, result.exception
    n_issues = store.count("issues")
    assert query(db_path, "select count(distinct issue_id) from analytics_staging.stg_github__issues") == [
        (n_issues,)
    ]
    merged = sum(1 for repo in REPOS for pull in store.truth(repo, "pull_requests") if pull["merged_at"])
    assert query(
        db_path, "select count(*) from analytics_staging.stg_github__pull_requests where is_merged"
    ) == [(merged,)]


def test_missing_settings_are_named(make_pipeline: PipelineFactory) -> None:
    with pytest.raises(Exception, match="SOURCES__GITHUB__ACCESS_TOKEN"):
        make_pipeline("github_no_token").extract(
            github_source(repositories=["o/r"], base_url="http://127.0.0.1:1")
        )
    with pytest.raises(Exception, match="repositories"):
        make_pipeline("github_no_repos").extract(
            github_source(access_token=TOKEN, base_url="http://127.0.0.1:1")
        )
    with pytest.raises(ApiAuthError, match="SOURCES__GITHUB__ACCESS_TOKEN"):
        github_source(repositories=["o/r"], access_token=" ", base_url="http://127.0.0.1:1")
