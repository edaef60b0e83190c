"""The whole ELT flow on BigQuery, through the real clients, against the local emulator.

dlt's bigquery destination, dbt-bigquery and soda-bigquery talk to bqemulator over HTTP
(tests/emulators/bigquery_server.py), with the very settings a production run reads; the
emulator's gaps are patched in tests/emulators/bigquery/shims.py, never in the product.
The runs build on each other (first load → unchanged re-run on a fresh worker → source
changes); the first run is the session's (tests/support/first_runs.py), which the
cross-warehouse agreement reads too. Then misconfigurations: each must fail
in seconds, name the setting, and never show the secret.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flows.config import ConfigError, load_settings
from flows.elt import elt
from flows.report import RunSummary
from standins import DemoSources
from tests.emulators.bigquery_server import PROJECT, TOKEN, BigQueryEmulator
from tests.support import first_runs, pull_requests
from tests.support.bigquery import client, query, table_texts
from tests.support.demo_tables import (
    COUNTED_TABLES,
    assert_marts_show_the_changes,
    change_the_sources,
    expected_change_rows,
    rows_loaded,
)
from tests.support.first_runs import BigQueryFirstRun
from tests.support.observations import assert_the_run_observed_itself
from tests.support.privacy import assert_erased_and_kept_out

pytestmark = [pytest.mark.e2e, pytest.mark.bigquery, pytest.mark.timeout(600)]

N_ORDERS = first_runs.ORDERS_LOADED


@pytest.fixture(scope="module", autouse=True)
def shared(bigquery_first_run: BigQueryFirstRun) -> Iterator[BigQueryFirstRun]:
    """The session's first run on the emulator (tests/support/first_runs.py), its settings applied."""
    with bigquery_first_run.settings_applied():
        yield bigquery_first_run


@pytest.fixture(scope="module")
def emulator(shared: BigQueryFirstRun) -> BigQueryEmulator:
    assert shared.emulator is not None
    return shared.emulator


@pytest.fixture(scope="module")
def sources(shared: BigQueryFirstRun) -> DemoSources:
    return shared.sources


def counts() -> dict[str, int]:
    return {table: query(f"select count(*) from {table}")[0][0] for table in COUNTED_TABLES}


@pytest.fixture(scope="module")
def first_run(shared: BigQueryFirstRun) -> dict[str, int]:
    return shared.counts


def test_first_run_loads_raw_and_builds_marts(first_run: dict[str, int]) -> None:
    # GIVEN an empty BigQuery project WHEN the flow runs THEN every raw and mart table has rows
    assert all(rows > 0 for rows in first_run.values()), first_run
    assert first_run["raw_shop.orders"] == N_ORDERS
    assert first_run["analytics_marts.fct_orders"] == N_ORDERS
    # AND Stripe's JSON metadata links most orders to their charge
    paid = query("select count(*) from analytics_marts.fct_orders where payment_status = 'paid'")[0][0]
    assert paid > N_ORDERS / 2


def test_the_first_run_profiled_judged_and_traced_its_tables_in_bigquery(shared: BigQueryFirstRun) -> None:
    assert_the_run_observed_itself(shared.summary, query)


def test_fact_tables_are_partitioned_clustered_and_labelled(first_run: dict[str, int]) -> None:
    # GIVEN the first run's dbt build (the emulator accepts these options but does not keep
    # them as table metadata, so the DDL dbt sent is what is checked)
    ddl = (Path(os.environ["DBT_TARGET_PATH"]) / "run/elt/models/marts/fct_orders.sql").read_text()
    # THEN the fact table is day-partitioned, clustered and carries the cost label
    assert "partition by timestamp_trunc(ordered_at, day)" in ddl
    assert "cluster by customer_id" in ddl
    assert "labels=[('pipeline', 'elt')]" in ddl


def test_rerun_on_fresh_worker_loads_nothing(first_run: dict[str, int]) -> None:
    # GIVEN a worker whose local dlt folders are gone (state must come from BigQuery)
    shutil.rmtree(load_settings().pipelines_dir)
    # WHEN the flow runs over unchanged sources
    summary = elt()
    # THEN nothing is loaded and every table keeps its row count
    assert summary.ok, summary.error
    assert summary.rows_loaded == 0, summary.table_rows()
    assert counts() == first_run


def test_elt_ci_builds_a_pull_request_beside_production_and_drops_it(
    first_run: dict[str, int], tmp_path: Path
) -> None:
    # GIVEN production on BigQuery and a pull request changing fct_orders and stg_shop__products
    repo = pull_requests.checkout(tmp_path / "repo")
    pull_requests.open_pull_request(repo)
    expected = pull_requests.expected_diffs(
        query, "analytics_marts", "raw_shop", day_of=lambda column: f"timestamp_trunc({column}, day)"
    )
    assert expected["fct_orders"]["changed"] and expected["dim_products"]["changed"], expected
    # WHEN CI runs for it THEN it fails on the contract, builds and diffs what changed
    pull_requests.assert_ci_caught_the_pull_request(repo, expected, ["--warehouse", "bigquery"])
    # AND no CI dataset is left on the emulator
    assert [
        dataset.dataset_id for dataset in client().list_datasets() if dataset.dataset_id.startswith("ci")
    ] == []


def test_source_changes_load_exactly_the_changes(sources: DemoSources, first_run: dict[str, int]) -> None:
    # GIVEN new paid orders, updated customers, their Stripe charges, and deleted abandoned orders
    changes = change_the_sources(sources)
    # WHEN the flow runs
    summary = elt()
    assert summary.ok, summary.error
    # THEN exactly the changed rows are loaded (a delete is a row that removes its key)
    loaded = rows_loaded(summary)
    assert loaded == expected_change_rows(changes)
    after = counts()
    assert after["raw_shop.orders"] == first_run["raw_shop.orders"] + 4 - 2
    assert after["raw_shop.customers"] == first_run["raw_shop.customers"]  # merged, not appended
    # AND the marts reflect them
    assert_marts_show_the_changes(query, changes)


def test_forget_erases_a_customer_everywhere_and_no_reload_brings_them_back(
    first_run: dict[str, int],
) -> None:
    # GIVEN the customer the first run loaded into every place, WHEN forgotten THEN in none,
    # proven, and no re-read (a CDC re-snapshot, Stripe from the start) brings them back
    # (tests/support/privacy.py)
    def run(chosen: list[str]) -> RunSummary:
        summary = elt(sources=chosen)
        assert summary.ok, summary.error
        return summary

    assert_erased_and_kept_out(run, query, table_texts, load_settings().pipelines_dir)


# --- misconfiguration: fail fast, name the setting, never show the secret --------------------------

SECRET = "TOPSECRETVALUE"
FAKE_KEY = f"-----BEGIN PRIVATE KEY-----\n{SECRET}\n-----END PRIVATE KEY-----\n"


@pytest.fixture
def misconfigured(emulator: BigQueryEmulator, monkeypatch: pytest.MonkeyPatch) -> BigQueryEmulator:
    """The emulator's settings, each test then breaking one of them."""
    for key, value in emulator.client_environment().items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("DESTINATION__BIGQUERY__CREDENTIALS", raising=False)
    return emulator


def config_error(secrets: list[str]) -> str:
    """Resolve the BigQuery settings: must fail within seconds, showing no secret."""
    started = time.perf_counter()
    with pytest.raises(ConfigError) as failure:
        load_settings("bigquery")
    elapsed = time.perf_counter() - started
    message = str(failure.value)
    assert elapsed < 5, f"took {elapsed:.1f}s (a retry storm?): {message}"
    for secret in secrets:
        assert secret not in message
    return message


def service_account(**overrides: str) -> dict[str, str]:
    key = {
        "type": "service_account",
        "project_id": PROJECT,
        "client_email": f"elt@{PROJECT}.iam.gserviceaccount.com",
        "private_key_id": "0" * 40,
        "private_key": FAKE_KEY,
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    return key | overrides


def write_adc(path: Path, **fields: str) -> Path:
    adc = {"type": "authorized_user", "client_id": "c", "client_secret": "s", "refresh_token": SECRET}
    path.write_text(json.dumps(adc | fields))
    return path


def test_missing_key_file(
    misconfigured: BigQueryEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere" / "key.json"
    monkeypatch.setenv("DESTINATION__BIGQUERY__CREDENTIALS", str(missing))
    message = config_error([SECRET])
    assert "DESTINATION__BIGQUERY__CREDENTIALS" in message
    assert "does not exist" in message


def test_missing_application_default_credentials_file(
    misconfigured: BigQueryEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "adc.json"))
    message = config_error([SECRET])
    assert "GOOGLE_APPLICATION_CREDENTIALS" in message
    assert "DESTINATION__BIGQUERY__CREDENTIALS" in message  # the other way to give credentials


def test_malformed_service_account_json(
    misconfigured: BigQueryEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = json.dumps(service_account())[:-30]  # cut off: no longer JSON
    monkeypatch.setenv("DESTINATION__BIGQUERY__CREDENTIALS", broken)
    message = config_error([SECRET, broken])
    assert "DESTINATION__BIGQUERY__CREDENTIALS is not valid service-account JSON" in message


def test_unreadable_private_key(misconfigured: BigQueryEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DESTINATION__BIGQUERY__CREDENTIALS", json.dumps(service_account()))
    message = config_error([SECRET])
    assert "DESTINATION__BIGQUERY__CREDENTIALS" in message
    assert "private_key" in message


def test_service_account_key_refused_by_the_token_endpoint(
    misconfigured: BigQueryEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    # a well-formed key that no token endpoint accepts (the emulator has none: 404)
    key = service_account(private_key=pem, token_uri=f"{misconfigured.endpoint}/token")
    monkeypatch.setenv("DESTINATION__BIGQUERY__CREDENTIALS", json.dumps(key))
    message = config_error([pem.splitlines()[1], SECRET])
    assert "DESTINATION__BIGQUERY__CREDENTIALS" in message
    assert "not accepted" in message


def test_expired_login_that_cannot_be_refreshed(
    misconfigured: BigQueryEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    adc = write_adc(tmp_path / "adc.json", token=f"old-{SECRET}", expiry="2001-01-01T00:00:00Z")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(adc))
    message = config_error([SECRET])
    assert "GOOGLE_APPLICATION_CREDENTIALS" in message
    assert "not accepted" in message


def test_token_rejected_by_bigquery(
    misconfigured: BigQueryEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    adc = write_adc(tmp_path / "adc.json", token=f"revoked-{SECRET}", expiry="2999-01-01T00:00:00Z")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(adc))
    message = config_error([SECRET])
    assert "GOOGLE_APPLICATION_CREDENTIALS" in message
    assert "rejected" in message


def test_wrong_project(misconfigured: BigQueryEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DESTINATION__BIGQUERY__PROJECT_ID", "no-such-project")
    message = config_error([TOKEN])
    assert "DESTINATION__BIGQUERY__PROJECT_ID" in message
    assert "no-such-project" in message
