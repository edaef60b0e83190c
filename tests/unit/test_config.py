"""The one warehouse setting and what is derived from it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dlt_sources.errors import SourceError
from flows.cli import app
from flows.config import ConfigError, load_settings

SECRET = "pa55-w0rd-never-printed"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in ("ELT_WAREHOUSE", "ELT_DUCKDB_PATH", "ELT_DBT_SCHEMA", "ELT_INGEST_RETRIES"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)  # no .dlt/secrets.toml from the repository


def test_duckdb_is_the_default_and_everything_follows(tmp_path: Path) -> None:
    settings = load_settings()
    assert settings.warehouse.name == "duckdb"
    assert settings.duckdb_path.name == "warehouse.duckdb"
    env = settings.tool_environment()
    assert env["ELT_DBT_TARGET"] == "duckdb"
    assert env["ELT_DUCKDB_PATH"] == str(settings.duckdb_path)
    assert settings.soda_datasource.name == "duckdb.yml" and settings.soda_datasource.exists()
    assert settings.dlt_destination().destination_name == "duckdb"


def test_environment_picks_the_warehouse(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ELT_WAREHOUSE", "DuckDB")
    monkeypatch.setenv("ELT_DUCKDB_PATH", str(tmp_path / "other.duckdb"))
    settings = load_settings()
    assert settings.warehouse.name == "duckdb"
    assert settings.duckdb_path == tmp_path / "other.duckdb"


def test_unknown_warehouse_names_the_setting() -> None:
    with pytest.raises(ConfigError, match=r"ELT_WAREHOUSE='redshift' is not a known warehouse"):
        load_settings("redshift")


@pytest.mark.parametrize("warehouse", ["snowflake", "bigquery"])
def test_missing_cloud_credentials_name_the_settings_not_the_secret(
    warehouse: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if warehouse == "snowflake":
        monkeypatch.setenv("DESTINATION__SNOWFLAKE__CREDENTIALS__PASSWORD", SECRET)
    else:  # and no application-default credentials on this machine either
        monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
        monkeypatch.setenv("HOME", os.getcwd())
    with pytest.raises(ConfigError) as excinfo:
        load_settings(warehouse)
    message = str(excinfo.value)
    assert f"DESTINATION__{warehouse.upper()}__CREDENTIALS" in message
    assert SECRET not in message
    assert "\n" not in message


def test_snowflake_credentials_flow_to_dbt_and_soda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "DESTINATION__SNOWFLAKE__CREDENTIALS",
        f"snowflake://loader:{SECRET}@acme-xy12345/ANALYTICS?warehouse=LOAD_WH&role=LOADER",
    )
    settings = load_settings("snowflake")
    env = settings.tool_environment()
    assert env["ELT_DBT_TARGET"] == "snowflake"
    assert env["ELT_SNOWFLAKE_ACCOUNT"] == "acme-xy12345"
    assert env["ELT_SNOWFLAKE_PASSWORD"] == SECRET
    assert SECRET not in repr(settings)


def test_bad_retry_setting_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ELT_INGEST_RETRIES", "lots")
    with pytest.raises(ConfigError, match="ELT_INGEST_RETRIES"):
        load_settings()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["run", "--warehouse", "redshift"], "ELT_WAREHOUSE='redshift'"),
        (["run", "--warehouse", "snowflake"], "(or [destination.snowflake.credentials] in .dlt/"),
        (["run", "--source", "salesforce"], "unknown source(s) salesforce (--source); the sources are "),
    ],
)
def test_cli_bad_configuration_is_one_line_and_exit_1(args: list[str], expected: str) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error:") and expected in lines[0]


def test_missing_source_settings_are_one_line_naming_the_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.ingest import run_source

    for name in ("SOURCES__GITHUB__ACCESS_TOKEN", "SOURCES__GITHUB__REPOSITORIES"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SourceError) as excinfo:
        run_source("github", load_settings())
    message = str(excinfo.value)
    assert "\n" not in message
    assert "SOURCES__GITHUB__ACCESS_TOKEN" in message and "SOURCES__GITHUB__REPOSITORIES" in message
