"""The same demo data through the same flow gives the same marts on DuckDB, on Snowflake's
emulator and on BigQuery's emulator: equal row counts and equal checksums of every
published mart (tests/support/fingerprints.py says how values are compared).

The first runs are the session's (tests/support/first_runs.py): the warehouse modules go on
from them. DuckDB's is a developer environment's (``ELT_ENV=dev``), so a prefixed
environment must also build exactly production's marts. One comparison per cloud, each in
its cloud's test group, so parallel workers never make a cloud's first run twice.
"""

from __future__ import annotations

import pytest

from tests.support.first_runs import N_ORDERS, FirstRun

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]


@pytest.mark.parametrize(
    "cloud",
    [
        pytest.param("snowflake", marks=[pytest.mark.snowflake, pytest.mark.xdist_group("snowflake")]),
        pytest.param("bigquery", marks=[pytest.mark.bigquery, pytest.mark.xdist_group("bigquery")]),
    ],
)
def test_every_mart_agrees_with_duckdb(
    cloud: str, duckdb_dev_first_run: FirstRun, request: pytest.FixtureRequest
) -> None:
    duckdb_marts = duckdb_dev_first_run.marts
    assert all(rows > 0 for rows, _ in duckdb_marts.values()), duckdb_marts
    assert duckdb_marts["fct_orders"][0] == N_ORDERS
    other: FirstRun = request.getfixturevalue(f"{cloud}_first_run")
    differing = {
        mart: (duckdb_marts[mart], other.marts.get(mart))
        for mart in duckdb_marts
        if other.marts.get(mart) != duckdb_marts[mart]
    }
    assert differing == {}, f"{cloud} differs from duckdb"
