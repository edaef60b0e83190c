"""The whole ELT flow on Snowflake's emulator, through the real client libraries.

dlt's snowflake destination, dbt-snowflake and soda-snowflake all talk to fakesnow's
HTTP server on 127.0.0.1 (tests/emulators/snowflake), exactly as they would talk to
Snowflake: only the endpoint and a few generic settings differ. The runs build on each
other (first load → unchanged re-run → source changes); the first run is the session's
(tests/support/first_runs.py), which the cross-warehouse agreement reads too. The
misconfiguration tests each fail one setting and must fail fast, naming it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import dlt
import pytest
from typer.testing import CliRunner

from flows.checks import verify_contract
from flows.cli import app
from flows.config import CHECKS_DIR, ConfigError, environment, load_settings
from flows.contract_target import ContractTarget
from flows.elt import EltRunFailed, elt
from flows.report import RunSummary
from flows.transform import run_dbt_operation
from standins import DemoSources
from tests.emulators.snowflake import FakeSnowflake
from tests.support import first_runs, pull_requests
from tests.support import snowflake as snowflake_queries
from tests.support.demo_tables import (
    COUNTED_TABLES,
    assert_marts_show_the_changes,
    assert_moved_customers_versioned,
    change_the_sources,
    expected_change_rows,
    rows_loaded,
)
from tests.support.first_runs import SnowflakeFirstRun
from tests.support.observations import assert_the_run_observed_itself
from tests.support.privacy import assert_erased_and_kept_out
from tests.support.snowflake import PASSPHRASE, PASSWORD

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.snowflake,
    pytest.mark.timeout(600),
]

N_ORDERS = first_runs.ORDERS_LOADED


@pytest.fixture(scope="module", autouse=True)
def shared(snowflake_first_run: SnowflakeFirstRun) -> Iterator[SnowflakeFirstRun]:
    """The session's first run on the emulator (tests/support/first_runs.py), its settings applied."""
    with snowflake_first_run.settings_applied():
        yield snowflake_first_run


@pytest.fixture(scope="module")
def snowflake(shared: SnowflakeFirstRun) -> FakeSnowflake:
    assert shared.server is not None
    return shared.server


@pytest.fixture(scope="module")
def key_pair(shared: SnowflakeFirstRun) -> tuple[Path, Path]:
    assert shared.key_pair is not None
    return shared.key_pair


@pytest.fixture(scope="module")
def workdir(shared: SnowflakeFirstRun) -> Path:
    return shared.workdir


@pytest.fixture(scope="module")
def sources(shared: SnowflakeFirstRun) -> DemoSources:
    return shared.sources


@pytest.fixture(scope="module")
def first_run(shared: SnowflakeFirstRun) -> dict[str, int]:
    return shared.counts


def query(server: FakeSnowflake, sql: str) -> list[tuple[Any, ...]]:
    return snowflake_queries.query(server, sql)


def counts(server: FakeSnowflake) -> dict[str, int]:
    return {table: query(server, f"select count(*) from {table}")[0][0] for table in COUNTED_TABLES}


def run_elt(snowflake: FakeSnowflake) -> RunSummary:
    """One passing run of the flow; a failure shows the emulator's log (its errors are there)."""
    try:
        summary = elt()
    except EltRunFailed as exc:
        pytest.fail(f"{exc.summary.error}\n--- first failed statements ---\n{snowflake.first_errors()}")
    assert summary.ok, summary.error
    return summary


def test_first_run_loads_raw_gates_builds_and_publishes(
    first_run: dict[str, int], snowflake: FakeSnowflake
) -> None:
    # GIVEN an empty Snowflake WHEN the flow runs THEN every raw and published mart table has rows
    assert all(rows > 0 for rows in first_run.values()), first_run
    assert first_run["raw_shop.orders"] == N_ORDERS
    assert first_run["analytics_marts.fct_orders"] == N_ORDERS
    (paid,) = query(
        snowflake, "select count(*) from analytics_marts.fct_orders where payment_status = 'paid'"
    )[0]
    assert paid > N_ORDERS / 2


def test_the_first_run_profiled_judged_and_traced_its_tables_in_snowflake(
    shared: SnowflakeFirstRun, snowflake: FakeSnowflake
) -> None:
    assert_the_run_observed_itself(shared.summary, partial(query, snowflake))


def test_rerun_loads_nothing(first_run: dict[str, int], snowflake: FakeSnowflake) -> None:
    # GIVEN unchanged sources WHEN the flow runs again THEN nothing is loaded and nothing changes
    summary = run_elt(snowflake)
    assert summary.rows_loaded == 0, summary.table_rows()
    assert summary.dbt is None, summary.build_plan  # nothing changed: nothing is built
    assert counts(snowflake) == first_run


def test_elt_dbt_runs_dbt_on_snowflake_with_nothing_exported_by_hand(
    first_run: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the credentials where the flow finds them, and none of the variables dbt's
    # profile reads (the flow exports those only while it runs)
    exported = ("ELT_SNOWFLAKE_", "ELT_DBT_", "ELT_WAREHOUSE")
    for name in [name for name in os.environ if name.startswith(exported)]:
        monkeypatch.delenv(name)
    # WHEN an analytics engineer rebuilds a mart and its children by hand
    selection = ["-s", "fct_orders+", "--exclude", "resource_type:test"]
    result = CliRunner().invoke(app, ["dbt", "build", *selection, "--warehouse", "snowflake"])
    # THEN dbt built them on the emulator (into the audit schema: by hand never publishes)
    assert result.exit_code == 0, result.output
    results = json.loads((Path(os.environ["DBT_TARGET_PATH"]) / "run_results.json").read_text())["results"]
    built = {r["unique_id"]: r["status"] for r in results if r["unique_id"].startswith("model.")}
    assert built == dict.fromkeys(
        ["model.elt.dim_customers", "model.elt.fct_orders", "model.elt.fct_revenue_daily"], "success"
    )


def test_elt_ci_builds_a_pull_request_beside_production_and_drops_it(
    first_run: dict[str, int], snowflake: FakeSnowflake, tmp_path: Path
) -> None:
    # GIVEN production on Snowflake and a pull request changing fct_orders and stg_shop__products
    repo = pull_requests.checkout(tmp_path / "repo")
    pull_requests.open_pull_request(repo)
    expected = pull_requests.expected_diffs(partial(query, snowflake), "analytics_marts", "raw_shop")
    assert expected["fct_orders"]["changed"] and expected["dim_products"]["changed"], expected
    # WHEN CI runs for it THEN it fails on the contract, builds and diffs what changed
    pull_requests.assert_ci_caught_the_pull_request(
        repo, expected, ["--warehouse", "snowflake"], snowflake.first_errors
    )
    # AND no CI schema is left on the emulator
    assert (
        query(snowflake, "select schema_name from information_schema.schemata where schema_name ilike 'ci%'")
        == []
    )


def test_source_changes_load_exactly_the_changes(
    sources: DemoSources, first_run: dict[str, int], snowflake: FakeSnowflake
) -> None:
    # GIVEN new paid orders, moved customers, their Stripe charges, and deleted abandoned orders
    changes = change_the_sources(sources)
    # WHEN the flow runs
    summary = run_elt(snowflake)
    # THEN exactly the changed rows are loaded
    loaded = rows_loaded(summary)
    assert loaded == expected_change_rows(changes)
    after = counts(snowflake)
    assert after["raw_shop.orders"] == first_run["raw_shop.orders"] + 4 - 2
    assert after["raw_shop.customers"] == first_run["raw_shop.customers"]
    # AND the published marts reflect them: new orders paid, moved customers versioned, deletes gone
    assert_marts_show_the_changes(lambda sql: query(snowflake, sql), changes)
    assert_moved_customers_versioned(lambda sql: query(snowflake, sql), changes)


def test_forget_erases_a_customer_everywhere_and_no_reload_brings_them_back(
    first_run: dict[str, int], snowflake: FakeSnowflake
) -> None:
    # GIVEN the customer the first run loaded into every place, WHEN forgotten THEN in none,
    # proven, and no re-read (a CDC re-snapshot, Stripe from the start) brings them back
    # (tests/support/privacy.py)
    def run(chosen: list[str]) -> RunSummary:
        try:
            summary = elt(sources=chosen)
        except EltRunFailed as exc:
            pytest.fail(f"{exc.summary.error}\n--- first failed statements ---\n{snowflake.first_errors()}")
        assert summary.ok, summary.error
        return summary

    assert_erased_and_kept_out(
        run,
        partial(query, snowflake),
        partial(snowflake_queries.table_texts, snowflake),
        load_settings().pipelines_dir,
    )


# --- misconfiguration: fail fast, name the setting, never show the secret --------------------------------


def _run_failing(settings: dict[str, str]) -> tuple[str, float]:
    """Run the flow (shop only, no retries) with some settings changed; the error text and seconds."""
    started = time.monotonic()
    with (
        environment({"ELT_INGEST_RETRIES": "0", **settings}),
        pytest.raises((EltRunFailed, ConfigError)) as failure,
    ):
        elt(sources=["shop"])
    return _error_text(failure.value), time.monotonic() - started


def _error_text(exc: BaseException) -> str:
    """Everything a user would read: the run's error and the whole cause chain."""
    parts, current = [], exc
    while current is not None:
        parts.append(f"{type(current).__name__}: {current}")
        current = current.__cause__ or current.__context__
    return "\n".join(parts)


def test_wrong_host_fails_fast_naming_the_setting(sources: DemoSources, snowflake: FakeSnowflake) -> None:
    # GIVEN an account endpoint where nothing listens, with a 3 s login timeout
    url = snowflake.credentials_url(port="9", login_timeout="3")
    # WHEN the flow runs THEN it fails within seconds, naming the setting, not the password
    error, elapsed = _run_failing({"DESTINATION__SNOWFLAKE__CREDENTIALS": url})
    assert elapsed < 20, f"took {elapsed:.0f}s: the connector retried"
    assert "did not answer at 127.0.0.1:9" in error and "DESTINATION__SNOWFLAKE__CREDENTIALS" in error, error
    assert PASSWORD not in error


def test_wrong_password_fails_fast_naming_the_setting(sources: DemoSources, snowflake: FakeSnowflake) -> None:
    wrong = "not-the-password-4711"
    error, elapsed = _run_failing({"DESTINATION__SNOWFLAKE__CREDENTIALS": snowflake.credentials_url(wrong)})
    assert elapsed < 20, f"took {elapsed:.0f}s: the connector retried"
    assert "refused the login of user 'elt_loader'" in error and "__PASSWORD" in error, error
    assert wrong not in error and PASSWORD not in error


def test_missing_key_file_fails_before_connecting(snowflake: FakeSnowflake, workdir: Path) -> None:
    missing = workdir / "no_such_key.p8"
    url = snowflake.credentials_url("", private_key_path=str(missing), private_key_passphrase=PASSPHRASE)
    started = time.monotonic()
    with environment({"DESTINATION__SNOWFLAKE__CREDENTIALS": url}), pytest.raises(ConfigError) as failure:
        load_settings()
    assert time.monotonic() - started < 5
    message = str(failure.value)
    assert "DESTINATION__SNOWFLAKE__CREDENTIALS__PRIVATE_KEY_PATH" in message and str(missing) in message
    assert PASSPHRASE not in message and PASSWORD not in message


def test_wrong_key_passphrase_fails_before_connecting(
    snowflake: FakeSnowflake, key_pair: tuple[Path, Path]
) -> None:
    url = snowflake.credentials_url("", private_key_path=str(key_pair[0]), private_key_passphrase="nope-1618")
    with environment({"DESTINATION__SNOWFLAKE__CREDENTIALS": url}), pytest.raises(ConfigError) as failure:
        load_settings().tool_environment()
    assert "PRIVATE_KEY_PASSPHRASE" in str(failure.value)
    assert "nope-1618" not in str(failure.value)


def test_key_pair_login_works_for_dlt_dbt_and_soda(
    first_run: dict[str, int], snowflake: FakeSnowflake, key_pair: tuple[Path, Path]
) -> None:
    # GIVEN credentials with an encrypted private key and no password
    url = snowflake.credentials_url("", private_key_path=str(key_pair[0]), private_key_passphrase=PASSPHRASE)
    saved = dict(os.environ)
    try:
        os.environ["DESTINATION__SNOWFLAKE__CREDENTIALS"] = url
        settings = load_settings()
        settings.export_tool_environment()
        # THEN dlt reads the raw tables,
        pipeline = dlt.pipeline(
            "snowflake_key_pair_check",
            destination=settings.dlt_destination(),
            dataset_name="raw_shop",
            pipelines_dir=str(settings.pipelines_dir),
        )
        with pipeline.sql_client() as client:
            loaded = client.execute_sql("select count(*) from orders")[0][0]
        assert loaded == query(snowflake, "select count(*) from raw_shop.orders")[0][0] > 0
        # AND dbt connects (publishing again changes nothing),
        run_dbt_operation("publish_marts", {"tables": ["fct_orders"]})
        # AND Soda verifies a contract, all three with the key
        assert settings.soda_datasource.name == "snowflake_key_pair.yml"
        result = verify_contract(
            CHECKS_DIR / "raw" / "shop" / "orders.yml",
            settings.soda_datasource,
            target=ContractTarget.for_settings(settings),
        )
        assert result.passed, result.failure_message()
    finally:
        os.environ.clear()
        os.environ.update(saved)
