"""The same demo data through the same flow gives the same marts on DuckDB, on Snowflake's
emulator and on BigQuery's emulator: equal row counts and equal checksums of every
published mart (tests/support/fingerprints.py says how values are compared)."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.config import environment, load_settings
from flows.elt import elt
from standins import demo_sources
from tests.emulators.bigquery_server import bigquery_emulator
from tests.emulators.snowflake import running_fakesnow
from tests.support.fingerprints import mart_fingerprints

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.snowflake,
    pytest.mark.bigquery,
    pytest.mark.usefixtures("prefect_harness"),
    pytest.mark.timeout(1800),
]

N_ORDERS = 200
# the marts hash personal data with the salt: the same salt everywhere, or no hash would match
SALT = "the-same-salt-in-every-warehouse"


def load_and_fingerprint(workdir: Path) -> dict[str, tuple[int, str]]:
    summary = elt()
    assert summary.ok, summary.error
    return mart_fingerprints(load_settings(), workdir)


def test_every_mart_agrees_across_the_three_warehouses(module_dir: Path) -> None:
    workdir = module_dir
    common = {"TRANSFORM__PII_SALT": SALT, "ELT_DUCKDB_PATH": str(workdir / "warehouse.duckdb")}
    with (
        demo_sources(workdir / "state", n_orders=N_ORDERS, durable=False) as demo,
        environment(demo.environment() | common),
    ):
        # each warehouse's first run takes its own snapshot of the shop (a new CDC slot)
        with environment({"ELT_WAREHOUSE": "duckdb"}):
            duckdb_marts = load_and_fingerprint(workdir)
        with running_fakesnow(workdir / "snowflake") as snowflake, environment(snowflake.environment()):
            snowflake_marts = load_and_fingerprint(workdir)
        with bigquery_emulator(workdir / "bigquery") as bigquery, environment(bigquery.client_environment()):
            bigquery_marts = load_and_fingerprint(workdir)

    assert all(rows > 0 for rows, _ in duckdb_marts.values()), duckdb_marts
    assert duckdb_marts["fct_orders"][0] == N_ORDERS
    for name, other in (("snowflake", snowflake_marts), ("bigquery", bigquery_marts)):
        differing = {
            mart: (duckdb_marts[mart], other.get(mart))
            for mart in duckdb_marts
            if other.get(mart) != duckdb_marts[mart]
        }
        assert differing == {}, f"{name} differs from duckdb"
