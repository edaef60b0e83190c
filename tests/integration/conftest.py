"""Fixtures shared by the source integration tests: a DuckDB file, real dlt pipelines and
the SQL database test source's PostgreSQL database."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import dlt
import pytest

from flows.config import environment
from tests.support.postgres import ModuleDatabases

PipelineFactory = Callable[[str], dlt.Pipeline]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "warehouse.duckdb"


@pytest.fixture
def make_pipeline(tmp_path: Path, db_path: Path, request: pytest.FixtureRequest) -> PipelineFactory:
    """Pipelines into ``db_path``, loading the test module's ``DATASET``, state kept in tmp_path."""
    dataset = request.module.DATASET

    def make(name: str) -> dlt.Pipeline:
        return dlt.pipeline(
            pipeline_name=name,
            destination=dlt.destinations.duckdb(str(db_path)),
            dataset_name=dataset,
            pipelines_dir=str(tmp_path / "pipelines"),
        )

    return make


@pytest.fixture
def dbt_workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the dbt profile's duckdb target at the test and keep dbt's artifacts in tmp_path
    (so parallel runs cannot trample each other); returns dbt's target folder."""
    monkeypatch.setenv("ELT_DBT_TARGET", "duckdb")
    monkeypatch.setenv("ELT_DBT_SCHEMA", "analytics")
    monkeypatch.setenv("ELT_SCHEMA_PREFIX", "")
    monkeypatch.setenv("DBT_TARGET_PATH", str(tmp_path / "dbt_target"))
    monkeypatch.setenv("DBT_LOG_PATH", str(tmp_path / "dbt_logs"))
    return tmp_path / "dbt_target"


@pytest.fixture
def pgtest_dsn(postgres_databases: ModuleDatabases, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh database per test on the session's server (its DSN), with
    SOURCES__PGTEST__CREDENTIALS pointing at it."""
    dsn = postgres_databases.create(request.node.name.removeprefix("test_")).dsn()
    with environment({"SOURCES__PGTEST__CREDENTIALS": dsn}):
        yield dsn
