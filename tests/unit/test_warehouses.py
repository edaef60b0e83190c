"""The warehouse plug-ins: found by name, and each answering what the flows and the coming
issues ask of it. No warehouse needed: these check the names and SQL each one hands out."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import duckdb
import pytest

from flows.config import PROJECT_DIR, ConfigError, Settings, load_settings
from flows.warehouses import DEFAULT_WAREHOUSE, WAREHOUSES, warehouse_named
from flows.warehouses.base import PublishStrategy
from flows.warehouses.bigquery import BigQueryCredentials

SNOWFLAKE_URL = "snowflake://loader:pw-1@acme-xy12345/analytics?warehouse=LOAD_WH&role=LOADER"


@pytest.fixture
def duckdb_settings(tmp_path: Path) -> Settings:
    return Settings(
        warehouse=warehouse_named("duckdb"), duckdb_path=tmp_path / "w.duckdb", dbt_schema="analytics"
    )


@pytest.fixture
def snowflake_settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("DESTINATION__SNOWFLAKE__CREDENTIALS", SNOWFLAKE_URL)
    return load_settings("snowflake")


@pytest.fixture
def bigquery_settings(duckdb_settings: Settings) -> Settings:
    credentials = BigQueryCredentials(project_id="acme-prod", location="EU", source="a test")
    return replace(duckdb_settings, warehouse=warehouse_named("bigquery"), credentials=credentials)


def test_a_warehouse_is_found_by_its_name_in_any_case() -> None:
    assert warehouse_named(" BigQuery ").name == "bigquery"
    assert DEFAULT_WAREHOUSE == "duckdb"
    assert all(warehouse_named(name).name == name for name in WAREHOUSES)


def test_an_unknown_warehouse_lists_the_choices() -> None:
    with pytest.raises(
        ConfigError, match=r"ELT_WAREHOUSE='redshift'.*choose one of duckdb, snowflake, bigquery"
    ):
        warehouse_named("redshift")


def test_every_warehouse_has_a_dbt_target_a_soda_data_source_and_a_package_extra() -> None:
    profiles = (PROJECT_DIR / "transform" / "profiles.yml").read_text()
    pyproject = (PROJECT_DIR / "pyproject.toml").read_text()
    for name in WAREHOUSES:
        assert re.search(rf"^ +{name}:$", profiles, re.MULTILINE), f"no {name} output in profiles.yml"
        assert (PROJECT_DIR / "checks" / "datasources" / f"{name}.yml").is_file()
        assert f"dbt-{name}" in pyproject and f"soda-{name}" in pyproject


def test_publish_strategies_follow_the_publish_marts_macro() -> None:
    macro = (PROJECT_DIR / "transform" / "macros" / "publish_marts.sql").read_text()
    assert "begin transaction" in macro.split("macro snowflake__publish_marts")[0]
    assert " swap with " in macro and " copy " in macro
    assert {name: warehouse.publish_strategy for name, warehouse in WAREHOUSES.items()} == {
        "duckdb": PublishStrategy.TRANSACTION,
        "snowflake": PublishStrategy.SCHEMA_SWAP,
        "bigquery": PublishStrategy.TABLE_COPY,
    }


def test_only_duckdb_takes_a_single_writer() -> None:
    assert {name: warehouse.takes_concurrent_writers for name, warehouse in WAREHOUSES.items()} == {
        "duckdb": False,
        "snowflake": True,
        "bigquery": True,
    }


def test_duckdb_drops_quoted_schemas_and_names_its_file_for_lineage(duckdb_settings: Settings) -> None:
    warehouse = duckdb_settings.warehouse
    assert warehouse.drop_schema_sql(duckdb_settings, 'ci_"raw') == 'drop schema if exists "ci_""raw" cascade'
    assert warehouse.lineage_namespace(duckdb_settings) == f"duckdb://{duckdb_settings.duckdb_path}"
    # no roles and no masking in a DuckDB file
    assert warehouse.grant_select_sql(duckdb_settings, "analytics_marts", "analyst") is None
    assert warehouse.mask_column_sql(duckdb_settings, "raw_shop", "customers", "email", "mask") is None


def test_duckdb_reads_column_types_of_a_built_table(duckdb_settings: Settings) -> None:
    warehouse = duckdb_settings.warehouse
    assert warehouse.column_types(duckdb_settings, "marts", "fct_orders") == {}  # no file yet
    with duckdb.connect(str(duckdb_settings.duckdb_path)) as con:
        con.execute("create schema marts; create table marts.fct_orders (id bigint, amount decimal(12,2))")
    assert warehouse.column_types(duckdb_settings, "marts", "fct_orders") == {
        "id": ("bigint", None, None),
        "amount": ("decimal", 12, 2),
    }


def test_snowflake_sql_names_the_database_and_upper_cases_quoted_names(snowflake_settings: Settings) -> None:
    warehouse = snowflake_settings.warehouse
    drop = warehouse.drop_schema_sql(snowflake_settings, "ci_raw_shop")
    assert drop == 'drop schema if exists "ANALYTICS"."CI_RAW_SHOP" cascade'
    assert warehouse.lineage_namespace(snowflake_settings) == "snowflake://acme-xy12345"
    grants = warehouse.grant_select_sql(snowflake_settings, "analytics_marts", "analyst")
    assert (
        grants is not None
        and grants[0] == 'grant usage on schema "ANALYTICS"."ANALYTICS_MARTS" to role "ANALYST"'
    )
    assert any("future tables" in grant for grant in grants)
    mask = warehouse.mask_column_sql(
        snowflake_settings, "raw_shop", "customers", "email", "gov.policies.email"
    )
    assert mask == (
        'alter table "ANALYTICS"."RAW_SHOP"."CUSTOMERS" modify column "EMAIL" '
        "set masking policy gov.policies.email"
    )


def test_bigquery_sql_uses_backquotes_and_iam_principals(bigquery_settings: Settings) -> None:
    warehouse = bigquery_settings.warehouse
    drop = warehouse.drop_schema_sql(bigquery_settings, "ci_raw_shop")
    assert drop == "drop schema if exists `acme-prod`.`ci_raw_shop` cascade"
    assert warehouse.lineage_namespace(bigquery_settings) == "bigquery"
    assert warehouse.grant_select_sql(bigquery_settings, "analytics_marts", "group:bi@acme.com") == (
        'grant `roles/bigquery.dataViewer` on schema `acme-prod`.`analytics_marts` to "group:bi@acme.com"',
    )
    # masking is a policy tag set through Google's API, not SQL
    assert warehouse.mask_column_sql(bigquery_settings, "raw_shop", "customers", "email", "mask") is None
    assert bigquery_settings.catalog == "acme-prod"
    assert bigquery_settings.loader_file_format == "jsonl"
    assert bigquery_settings.soda_datasource.name == "bigquery.yml"


def test_only_snowflake_translates_a_refused_login(
    snowflake_settings: Settings, duckdb_settings: Settings
) -> None:
    class Refused(Exception):
        errno = 390100

    Refused.__module__ = "snowflake.connector.errors"
    wrapped = RuntimeError("load failed")
    wrapped.__cause__ = Refused("Incorrect username or password was specified.")
    error = snowflake_settings.login_error(wrapped)
    assert (
        error is not None and "refused the login of user 'loader'" in str(error) and "pw-1" not in str(error)
    )
    assert snowflake_settings.login_error(RuntimeError("disk full")) is None
    assert duckdb_settings.login_error(wrapped) is None


def test_contract_dialects_differ_only_where_the_warehouse_does() -> None:
    duck, snow, bq = (warehouse_named(name).dialect for name in ("duckdb", "snowflake", "bigquery"))
    assert not duck.data_types and not duck.upper_case_names and not duck.unchecked_column_keys
    assert snow.upper_case_names and snow.data_types["json"] == "variant"
    assert bq.data_types["bigint"] == "int64" and "numeric_scale" in bq.unchecked_column_keys
