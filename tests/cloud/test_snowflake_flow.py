"""The whole ELT flow on Snowflake's emulator, through the real client libraries.

dlt's snowflake destination, dbt-snowflake and soda-snowflake all talk to fakesnow's
HTTP server on 127.0.0.1 (tests/emulators/snowflake), exactly as they would talk to
Snowflake: only the endpoint and a few generic settings differ. The runs build on each
other (first load → unchanged re-run → source changes), so they share one module-scoped
set-up; the misconfiguration tests each fail one setting and must fail fast, naming it.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dlt
import pytest

from flows.checks import verify_contract
from flows.config import CHECKS_DIR, ConfigError, environment, load_settings
from flows.contract_target import ContractTarget
from flows.elt import EltRunFailed, elt
from flows.report import RunSummary
from flows.transform import run_dbt_operation
from standins import DemoSources, demo_sources
from tests.emulators.snowflake import FakeSnowflake, running_fakesnow
from tests.support.demo_tables import (
    COUNTED_TABLES,
    assert_marts_show_the_changes,
    assert_moved_customers_versioned,
    change_the_sources,
    expected_change_rows,
    rows_loaded,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.snowflake,
    pytest.mark.usefixtures("prefect_harness"),
    pytest.mark.timeout(600),
]

N_ORDERS = 200
PASSWORD = "s3cret-emulator-password"
PASSPHRASE = "key-passphrase-2718"


# Under the session's own folder, not pytest's numbered tmp dirs: other pytest sessions on
# the machine prune those while this module's Postgres and emulator still use them.
@pytest.fixture(scope="module")
def workdir(session_dir: Path) -> Path:
    return Path(tempfile.mkdtemp(prefix="snowflake-e2e-", dir=session_dir))


@pytest.fixture(scope="module")
def key_pair(workdir: Path) -> tuple[Path, Path]:
    """An RSA key pair as Snowflake users have one: private key PEM encrypted with a passphrase."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private, public = workdir / "rsa_key.p8", workdir / "rsa_key.pub"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(PASSPHRASE.encode()),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


@pytest.fixture(scope="module")
def snowflake(workdir: Path, key_pair: tuple[Path, Path]) -> Iterator[FakeSnowflake]:
    with running_fakesnow(workdir / "fakesnow", password=PASSWORD, public_key_file=key_pair[1]) as server:
        yield server


@pytest.fixture(scope="module")
def sources(workdir: Path, snowflake: FakeSnowflake) -> Iterator[DemoSources]:
    with (
        demo_sources(workdir / "state", n_orders=N_ORDERS, durable=False) as demo,
        environment(demo.environment() | snowflake.environment()),
    ):
        yield demo


def query(server: FakeSnowflake, sql: str) -> list[tuple[Any, ...]]:
    """Read the warehouse as any Snowflake client would (short timeouts: the emulator is local)."""
    import snowflake.connector

    with (
        snowflake.connector.connect(
            account=server.account,
            user=server.user,
            password=server.password,
            database=server.database,
            host=server.host,
            port=server.port,
            protocol="http",
            login_timeout=10,
            network_timeout=30,
        ) as connection,
        connection.cursor() as cursor,
    ):
        cursor.execute(sql)
        return list(cursor.fetchall())


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


@pytest.fixture(scope="module")
def first_run(sources: DemoSources, snowflake: FakeSnowflake) -> dict[str, int]:
    run_elt(snowflake)
    return counts(snowflake)


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


def test_rerun_loads_nothing(first_run: dict[str, int], snowflake: FakeSnowflake) -> None:
    # GIVEN unchanged sources WHEN the flow runs again THEN nothing is loaded and nothing changes
    summary = run_elt(snowflake)
    assert summary.rows_loaded == 0, summary.table_rows()
    assert counts(snowflake) == first_run


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
        run_dbt_operation("publish_marts")
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
