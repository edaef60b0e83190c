"""Per-environment schema names, and contracts rendered for the warehouse they run on."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flows.config import ConfigError, load_settings
from flows.contract_target import ContractTarget

RAW_CONTRACT = {
    "dataset": "warehouse/raw_shop/orders",
    "checks": [{"schema": {}}],
    "columns": [
        {"name": "id", "data_type": "bigint", "checks": [{"missing": None}]},
        {"name": "payload", "data_type": "JSON"},
        {"name": "note"},
    ],
}
MART_CONTRACT = {"dataset": "warehouse/${var.MARTS_SCHEMA}/fct_orders", "checks": [{"row_count": {}}]}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in ("ELT_WAREHOUSE", "ELT_ENV", "ELT_SCHEMA_PREFIX", "ELT_DEVELOPER", "ELT_DBT_SCHEMA"):
        # a flow run in this process exports the names it derived
        monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)


def test_production_names_have_no_prefix() -> None:
    settings = load_settings()
    assert settings.schema_prefix == ""
    assert settings.dataset("raw_shop") == "raw_shop"
    assert settings.dbt_schema == "analytics"


def test_dev_environment_prefixes_every_schema_with_the_developer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ELT_ENV", "dev")
    monkeypatch.setenv("ELT_DEVELOPER", "Alice.Smith")
    settings = load_settings()
    assert settings.dataset("raw_shop") == "dev_alice_smith_raw_shop"
    assert settings.dbt_schema == "dev_alice_smith_analytics"
    # dbt composes the same names: profiles.yml and the sources put the prefix in front
    assert settings.tool_environment()["ELT_SCHEMA_PREFIX"] == "dev_alice_smith_"
    assert settings.tool_environment()["ELT_DBT_SCHEMA"] == "analytics"
    # dlt trusts its local state: each environment keeps its own working folders
    assert settings.pipelines_dir.name == "duckdb_dev_alice_smith"
    monkeypatch.setenv("ELT_ENV", "prod")
    assert load_settings().pipelines_dir.name == "duckdb"


def test_explicit_prefix_wins_and_bad_values_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ELT_ENV", "dev")
    monkeypatch.setenv("ELT_SCHEMA_PREFIX", "ci_")
    assert load_settings().dataset("raw_stripe") == "ci_raw_stripe"
    monkeypatch.setenv("ELT_SCHEMA_PREFIX", "9-bad")
    with pytest.raises(ConfigError, match="ELT_SCHEMA_PREFIX"):
        load_settings()
    monkeypatch.setenv("ELT_ENV", "staging")
    with pytest.raises(ConfigError, match="ELT_ENV"):
        load_settings()


def test_duckdb_production_contracts_are_read_as_written() -> None:
    target = ContractTarget()
    assert target.is_identity
    assert target.render(RAW_CONTRACT) == RAW_CONTRACT


def test_contract_gets_catalog_prefix_and_warehouse_types() -> None:
    target = ContractTarget(catalog="ANALYTICS_DB", schema_prefix="dev_bo_", data_types={"json": "variant"})
    rendered = target.render(RAW_CONTRACT)
    assert rendered["dataset"] == "warehouse/ANALYTICS_DB/dev_bo_raw_shop/orders"
    assert [column.get("data_type") for column in rendered["columns"]] == ["bigint", "variant", None]
    assert rendered["columns"][0]["checks"] == [{"missing": None}]
    assert RAW_CONTRACT["dataset"] == "warehouse/raw_shop/orders"  # the input is left alone


def test_schema_from_a_variable_is_not_prefixed_twice() -> None:
    rendered = ContractTarget(catalog="proj", schema_prefix="dev_bo_").render(MART_CONTRACT)
    assert rendered["dataset"] == "warehouse/proj/${var.MARTS_SCHEMA}/fct_orders"
    assert "columns" not in rendered


def test_target_follows_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ContractTarget.for_settings(load_settings()).is_identity
    monkeypatch.setenv("ELT_ENV", "dev")
    monkeypatch.setenv("ELT_DEVELOPER", "bo")
    target = ContractTarget.for_settings(load_settings())
    assert (target.catalog, target.schema_prefix) == (None, "dev_bo_")


def test_smoke_cloud_says_it_skipped_without_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from flows.cli import app

    for key in list(os.environ):
        if key.startswith(("DESTINATION__SNOWFLAKE", "DESTINATION__BIGQUERY", "GOOGLE_")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", os.getcwd())  # no gcloud application-default credentials
    # the command sets the smoke prefix in this process's environment: undone after the test
    monkeypatch.setenv("ELT_SCHEMA_PREFIX", "smoke_")
    result = CliRunner().invoke(app, ["smoke-cloud"])
    assert result.exit_code == 0, result.output
    assert "skipped snowflake" in result.output and "skipped bigquery" in result.output
    assert "SKIPPED, no cloud credentials set" in result.output


def test_each_environment_replicates_through_its_own_slot(monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.ingest import use_environment_slots

    # set, then deleted: monkeypatch then restores the variable's absence after the test, also
    # undoing what use_environment_slots writes straight into os.environ
    monkeypatch.setenv("SOURCES__SHOP__SLOT_NAME", "")
    monkeypatch.delenv("SOURCES__SHOP__SLOT_NAME")
    use_environment_slots()  # production keeps the configured or default slot (elt_shop)
    assert "SOURCES__SHOP__SLOT_NAME" not in os.environ
    monkeypatch.setenv("ELT_ENV", "dev")
    monkeypatch.setenv("ELT_DEVELOPER", "bo")
    use_environment_slots()  # a developer must never take production's slot
    assert os.environ["SOURCES__SHOP__SLOT_NAME"] == "dev_bo_elt_shop"
    monkeypatch.setenv("SOURCES__SHOP__SLOT_NAME", "chosen_slot")
    use_environment_slots()
    assert os.environ["SOURCES__SHOP__SLOT_NAME"] == "chosen_slot"
