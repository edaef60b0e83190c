"""The same demo data through the same flow gives the same marts on DuckDB, on Snowflake's
emulator and on BigQuery's emulator: equal row counts and equal checksums of every
published mart (tests/support/fingerprints.py says how values are compared).

The three first runs are the session's (tests/support/first_runs.py): the warehouse modules
go on from them. Under two workers BigQuery's runs on the other worker, whose marts this
test reads from the session's shared folder. DuckDB's is a developer environment's
(``ELT_ENV=dev``), so a prefixed environment must also build exactly production's marts.
"""

from __future__ import annotations

import pytest

from tests.support.first_runs import ORDERS_LOADED, FirstRun, SnowflakeFirstRun

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.snowflake,
    pytest.mark.bigquery,
    pytest.mark.timeout(1800),
]


def test_every_mart_agrees_across_the_three_warehouses(
    duckdb_dev_first_run: FirstRun,
    snowflake_first_run: SnowflakeFirstRun,
    bigquery_marts: dict[str, tuple[int, str]],
) -> None:
    duckdb_marts = duckdb_dev_first_run.marts
    assert all(rows > 0 for rows, _ in duckdb_marts.values()), duckdb_marts
    assert duckdb_marts["fct_orders"][0] == ORDERS_LOADED
    for name, other in (("snowflake", snowflake_first_run.marts), ("bigquery", bigquery_marts)):
        differing = {
            mart: (duckdb_marts[mart], other.get(mart))
            for mart in duckdb_marts
            if other.get(mart) != duckdb_marts[mart]
        }
        assert differing == {}, f"{name} differs from duckdb"
