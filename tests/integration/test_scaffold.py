"""``elt contracts scaffold``: the generated contracts are valid and pass on the table they
describe (real dlt load, real dbt build, real Soda scan), and catch what they should."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from flows.checks import CHECKS_DIR, verify_contract
from flows.config import load_settings
from flows.pipelines import source_pipeline
from flows.results import Outcome
from flows.scaffold import ScaffoldError, scaffold_contract
from flows.transform import run_dbt_build
from tests.support.raw_tables import RAW_SQL

DATASOURCE = CHECKS_DIR / "datasources" / "duckdb.yml"


@pytest.fixture
def warehouse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dbt_workspace: Path) -> Path:
    path = tmp_path / "warehouse.duckdb"
    monkeypatch.setenv("ELT_DUCKDB_PATH", str(path))
    monkeypatch.setenv("ELT_DATA_DIR", str(tmp_path / "data"))
    return path


def test_raw_table_contract_comes_from_the_dlt_schema(warehouse: Path, tmp_path: Path) -> None:
    settings = load_settings()
    pipeline = source_pipeline("crm", settings)
    rows = [{"id": 1, "name": "a", "score": 1.5}, {"id": 2, "name": "b", "score": None}]
    pipeline.run(rows, table_name="accounts", primary_key="id", write_disposition="merge")
    # a fresh worker: the schema comes back from the warehouse
    pipeline.drop()

    path = scaffold_contract("raw_crm.accounts", settings, checks_dir=tmp_path / "checks")

    assert path == tmp_path / "checks" / "raw" / "crm" / "accounts.yml"
    text = path.read_text()
    assert "dataset: warehouse/raw_crm/accounts" in text
    result = verify_contract(path, DATASOURCE)
    assert result.passed, result.failure_message()
    assert {c.label for c in result.checks} >= {"schema", "row_count", "missing id", "duplicate id"}
    with duckdb.connect(str(warehouse)) as con:
        con.execute("insert into raw_crm.accounts select * from raw_crm.accounts where id = 1")
    failed = verify_contract(path, DATASOURCE)
    assert [c.label for c in failed.failed_checks] == ["duplicate id"]
    # never overwrites an edited contract by accident
    with pytest.raises(ScaffoldError, match="exists; pass --force"):
        scaffold_contract("raw_crm.accounts", settings, checks_dir=tmp_path / "checks")


def test_model_contract_comes_from_dbt_with_its_column_tests(warehouse: Path, tmp_path: Path) -> None:
    with duckdb.connect(str(warehouse)) as con:
        con.execute(RAW_SQL)
    run_dbt_build(["--select", "+fct_orders", "--exclude", "resource_type:test"])

    path = scaffold_contract("fct_orders", load_settings(), checks_dir=tmp_path / "checks")

    result = verify_contract(path, DATASOURCE)
    assert result.passed, result.failure_message()
    schema = next(c for c in result.checks if c.label == "schema")
    assert schema.outcome is Outcome.PASSED
    # dbt's unique / not_null / accepted_values tests became Soda checks
    assert {c.label for c in result.checks} >= {
        "missing order_id",
        "duplicate order_id",
        "invalid payment_status",
    }
    assert "numeric_scale: 2" in path.read_text()


def test_unknown_tables_are_named_in_the_error(warehouse: Path, tmp_path: Path) -> None:
    settings = load_settings()
    with pytest.raises(ScaffoldError, match="'no_such_model' is not a model"):
        scaffold_contract("no_such_model", settings, checks_dir=tmp_path)
    with pytest.raises(ScaffoldError, match=r"raw_nothing\.t: no such table"):
        scaffold_contract("raw_nothing.t", settings, checks_dir=tmp_path)
    with pytest.raises(ScaffoldError, match=r"give raw_<source>\.<table>"):
        scaffold_contract("analytics.fct_orders", settings, checks_dir=tmp_path)
