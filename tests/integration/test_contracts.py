"""Real Soda scans over small DuckDB files: the contract gate must fail closed.

Each test builds its own warehouse file with SQL, shaped like what dlt (raw) and
dbt (marts) produce, then runs the repo's real contracts and data source file.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest

from flows.checks import (
    CHECKS_DIR,
    ContractsFailed,
    contract_paths,
    run_contracts,
    verify_contract,
    verify_contracts,
)
from flows.results import CheckRecord, ContractResult, Outcome
from tests.support.duckdb import count_opens

DATASOURCE: Path = CHECKS_DIR / "datasources" / "duckdb.yml"
DLT = "_dlt_load_id varchar, _dlt_id varchar"

SCHEMA_SQL = f"""
create schema raw_shop;
create schema raw_stripe;
create schema {{marts}};

create table raw_shop.customers (
    id bigint, email varchar, first_name varchar, last_name varchar, street_address varchar, country varchar,
    created_at timestamptz, updated_at timestamptz, {DLT});
create table raw_shop.products (
    id bigint, sku varchar, name varchar, category varchar, price decimal(12,2),
    created_at timestamptz, updated_at timestamptz, {DLT});
create table raw_shop.orders (
    id bigint, customer_id bigint, status varchar, currency varchar,
    ordered_at timestamptz, updated_at timestamptz, {DLT});
create table raw_shop.order_items (
    id bigint, order_id bigint, product_id bigint, quantity bigint, unit_price decimal(12,2),
    updated_at timestamptz, {DLT});
create table raw_stripe.customers (
    id varchar, object varchar, created bigint, email varchar, name varchar, livemode boolean,
    metadata json, {DLT});
create table raw_stripe.charges (
    id varchar, object varchar, amount bigint, amount_refunded bigint, currency varchar,
    customer varchar, created bigint, status varchar, paid boolean, refunded boolean,
    livemode boolean, metadata json, description varchar, {DLT});
create table raw_stripe.refunds (
    id varchar, object varchar, amount bigint, charge varchar, currency varchar, created bigint,
    status varchar, reason varchar, {DLT});
-- Arrow loads: _dlt_load_id only
create table raw_stripe.invoices (
    id varchar, object varchar, customer varchar, number varchar, status varchar, currency varchar,
    amount_due bigint, amount_paid bigint, amount_remaining bigint, total bigint, created bigint,
    livemode boolean, metadata json, lines json, _dlt_load_id varchar);
create table raw_stripe.events (
    id varchar, object varchar, type varchar, created bigint, api_version varchar, livemode boolean,
    object_id varchar, object_type varchar, data json, _dlt_load_id varchar);

-- the declarative REST source (dlt_sources/rest/example_tickets.yml): Arrow load
create schema raw_example_tickets;
create table raw_example_tickets.tickets (
    id bigint, subject varchar, status varchar, priority varchar, requester json, tags json,
    comments_count bigint, created_at timestamptz, updated_at timestamptz, description varchar,
    _dlt_load_id varchar);

create table {{marts}}.dim_customers (
    customer_key varchar, customer_id bigint, email_hash varchar, name_hash varchar,
    street_address_hash varchar, country varchar,
    stripe_customer_id varchar, created_at timestamptz, valid_from timestamptz, valid_to timestamptz,
    is_current boolean, first_order_at timestamptz, last_order_at timestamptz, order_count bigint,
    lifetime_value decimal(38,2));
create table {{marts}}.fct_orders (
    order_id bigint, customer_id bigint, status varchar, currency varchar, ordered_at timestamptz,
    item_count bigint, order_total decimal(18,2), amount_paid decimal(18,2),
    amount_refunded decimal(18,2), payment_status varchar, source_load_id varchar);
"""

DATA_SQL = """
insert into raw_shop.customers values
    (1, 'ada@example.com', 'Ada', 'Lovelace', '12 St James Sq', 'GB', '2024-01-01 10:00+00',
     '2024-01-02 10:00+00', 'l1', 'c1'),
    (2, 'alan@example.com', 'Alan', 'Turing', '2 Hollymeade', 'GB', '2024-01-03 10:00+00',
     '2024-01-03 10:00+00', 'l1', 'c2');
insert into raw_shop.products values
    (10, 'SKU-10', 'Widget', 'tools', 9.99, '2024-01-01 00:00+00', '2024-01-01 00:00+00', 'l1', 'p1'),
    (11, 'SKU-11', 'Gadget', 'tools', 19.50, '2024-01-01 00:00+00', '2024-01-01 00:00+00', 'l1', 'p2');
insert into raw_shop.orders values
    (100, 1, 'paid', 'EUR', '2024-02-01 12:00+00', '2024-02-01 12:00+00', 'l1', 'o1'),
    (101, 2, 'shipped', 'EUR', '2024-02-02 12:00+00', '2024-02-03 12:00+00', 'l1', 'o2');
insert into raw_shop.order_items values
    (1000, 100, 10, 2, 9.99, '2024-02-01 12:00+00', 'l1', 'i1'),
    (1001, 101, 11, 1, 19.50, '2024-02-02 12:00+00', 'l1', 'i2');
insert into raw_stripe.customers values
    ('cus_1', 'customer', 1704103200, 'ada@example.com', 'Ada Lovelace', false,
     '{"shop_id": "1"}', 'l1', 's1');
insert into raw_stripe.charges values
    ('ch_1', 'charge', 1998, 0, 'eur', 'cus_1', 1706788800, 'succeeded', true, false, false,
     '{"order_id": "100"}', 'order 100', 'l1', 'h1');
insert into raw_stripe.refunds values
    ('re_1', 'refund', 500, 'ch_1', 'eur', 1706875200, 'succeeded', 'requested_by_customer', 'l1', 'r1');
insert into raw_stripe.invoices values
    ('in_1', 'invoice', 'cus_1', 'INV-1', 'paid', 'eur', 1998, 1998, 0, 1998, 1706788800, false,
     '{}', '{"object": "list", "data": []}', 'l1');
insert into raw_stripe.events values
    ('evt_1', 'event', 'invoice.paid', 1706788801, '2024-06-20', false, 'in_1', 'invoice',
     '{"object": {"id": "in_1", "object": "invoice"}}', 'l1');
insert into raw_example_tickets.tickets values
    (1, 'Ticket 1', 'open', 'high', '{"id": 1000, "email": "user0@example.com"}', '["billing"]', 2,
     '2025-12-31 00:00+00', '2026-01-01 00:00+00', 'Customer 0 reports an error.', 'l1');
-- fresh: the raw freshness checks warn after 48 hours without a change
update raw_shop.customers set updated_at = now() - interval 1 hour;
update raw_shop.orders set updated_at = now() - interval 2 hour;
update raw_example_tickets.tickets set updated_at = now() - interval 3 hour;
insert into {marts}.dim_customers values
    ('k1', 1, sha256('s|ada@example.com'), sha256('s|ada lovelace'), sha256('s|12 st james sq'),
     'GB', 'cus_1',
     '2024-01-01 10:00+00', '2024-01-01 10:00+00', '2024-01-02 10:00+00', false,
     '2024-02-01 12:00+00', '2024-02-01 12:00+00', 1, 19.98),
    ('k2', 1, sha256('s|ada@example.com'), sha256('s|ada byron'), sha256('s|12 st james sq'),
     'GB', 'cus_1',
     '2024-01-01 10:00+00', '2024-01-02 10:00+00', null, true,
     '2024-02-01 12:00+00', '2024-02-01 12:00+00', 1, 19.98),
    ('k3', 2, sha256('s|alan@example.com'), sha256('s|alan turing'), sha256('s|2 hollymeade'),
     'GB', null,
     '2024-01-03 10:00+00', '2024-01-03 10:00+00', null, true,
     '2024-02-02 12:00+00', '2024-02-02 12:00+00', 1, 19.50);
insert into {marts}.fct_orders values
    (100, 1, 'paid', 'EUR', '2024-02-01 12:00+00', 2, 19.98, 19.98, 5.00, 'partially_refunded', 'l1'),
    (101, 2, 'shipped', 'EUR', '2024-02-02 12:00+00', 1, 19.50, 0, 0, 'unpaid', 'l1');
"""

WarehouseFactory = Callable[..., Path]


@pytest.fixture
def make_warehouse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> WarehouseFactory:
    """Build a good warehouse, apply extra SQL to break it, point ELT_DUCKDB_PATH at it."""

    def build(*extra_sql: str, marts: str = "analytics_marts_audit") -> Path:
        path = tmp_path / "warehouse.duckdb"
        with duckdb.connect(str(path)) as con:  # closed before Soda opens it read-only
            con.execute(SCHEMA_SQL.replace("{marts}", marts))
            con.execute(DATA_SQL.replace("{marts}", marts))
            for sql in extra_sql:
                con.execute(sql)
        monkeypatch.setenv("ELT_DUCKDB_PATH", str(path))
        return path

    return build


def write_contract(tmp_path: Path, text: str, name: str = "contract.yml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def check(result: ContractResult, label: str) -> CheckRecord:
    return next(c for c in result.checks if c.label == label)


# The sources whose raw tables the fixture warehouse builds by hand. Every other
# source's integration test verifies its contracts against a real load.
FIXTURE_SOURCES = ["shop", "stripe", "example_tickets"]
# The marts built by hand here; test_dbt_project verifies every mart contract against
# a real dbt build.
FIXTURE_MARTS = [CHECKS_DIR / "marts" / "dim_customers.yml", CHECKS_DIR / "marts" / "fct_orders.yml"]


def all_contracts() -> list[Path]:
    return contract_paths("raw", sources=FIXTURE_SOURCES) + FIXTURE_MARTS


def test_every_source_and_mart_has_its_contracts() -> None:
    """One contract folder per registered source, one contract per mart model."""
    from dlt_sources.registry import SOURCES

    for source in SOURCES:
        assert contract_paths("raw", sources=[source]), f"no contracts in checks/raw/{source}/"
    marts = sorted(p.stem for p in (CHECKS_DIR.parent / "transform" / "models" / "marts").glob("*.sql"))
    assert [p.stem for p in contract_paths("marts")] == marts


def test_all_contracts_pass_on_good_data(make_warehouse: WarehouseFactory) -> None:
    make_warehouse()
    results = verify_contracts(all_contracts(), DATASOURCE)

    for result in results:
        assert result.passed, result.failure_message()
        assert result.error is None
        # The schema check really ran: NOT_EVALUATED would have failed the contract anyway.
        assert check(result, "schema").outcome is Outcome.PASSED
        assert {c.outcome for c in result.checks} == {Outcome.PASSED}
    fct = next(r for r in results if r.dataset == "analytics_marts_audit.fct_orders")
    assert fct.qualified_name == "warehouse/analytics_marts_audit/fct_orders"
    assert {c.label for c in fct.checks} >= {
        "invalid status",
        "invalid payment_status",
        "failed_rows: every order belongs to a known customer",
    }


def test_marts_schema_comes_from_a_variable(make_warehouse: WarehouseFactory) -> None:
    make_warehouse(marts="dev_jane_marts")

    variables = {"MARTS_SCHEMA": "dev_jane_marts"}
    assert all(r.passed for r in verify_contracts(FIXTURE_MARTS, DATASOURCE, variables))
    # The default (analytics_marts_audit) does not exist in this warehouse.
    assert not any(r.passed for r in verify_contracts(FIXTURE_MARTS, DATASOURCE))


def test_duplicate_id_fails_naming_table_and_check(
    make_warehouse: WarehouseFactory,
) -> None:
    make_warehouse(
        "insert into raw_shop.orders values "
        "(100, 2, 'placed', 'EUR', '2024-02-05 12:00+00', '2024-02-05 12:00+00', 'l2', 'o3')"
    )
    result = verify_contract(CHECKS_DIR / "raw/shop/orders.yml", DATASOURCE)

    assert not result.passed
    assert check(result, "duplicate id").outcome is Outcome.FAILED
    assert [c.label for c in result.failed_checks] == ["duplicate id"]
    assert result.failure_message() == (
        "contract checks/raw/shop/orders.yml failed: table raw_shop.orders, "
        "check 'duplicate id' failed (duplicate_count=1)"
    )


def test_missing_and_invalid_values_in_marts_fail(
    make_warehouse: WarehouseFactory,
) -> None:
    make_warehouse(
        "insert into analytics_marts_audit.fct_orders values "
        "(102, 999, 'lost', 'EUR', '2024-02-06 12:00+00', 1, 1, 0, 0, 'unpaid', 'l2'),"
        "(103, null, 'paid', 'EUR', '2024-02-06 12:00+00', 1, 1, 0, 0, 'unpaid', 'l2')"
    )
    result = verify_contract(CHECKS_DIR / "marts/fct_orders.yml", DATASOURCE)

    # an unknown customer fails; no customer (an erased one's order, kept) does not
    assert not result.passed
    assert {c.label for c in result.failed_checks} == {
        "invalid status",
        "failed_rows: every order belongs to a known customer",
    }
    message = result.failure_message()
    assert "'failed_rows: every order belongs to a known customer' failed (failed_rows_count=1)" in message
    assert "check 'invalid status' failed (invalid_count=1)" in message


def test_missing_column_fails_schema_check(make_warehouse: WarehouseFactory) -> None:
    make_warehouse("alter table raw_shop.customers drop column email")
    result = verify_contract(CHECKS_DIR / "raw/shop/customers.yml", DATASOURCE)

    assert not result.passed
    assert check(result, "schema").outcome is Outcome.FAILED
    assert "check 'schema' failed (schema_events_count=1; missing columns: email)" in result.failure_message()


def test_wrong_decimal_precision_fails_schema_check(
    make_warehouse: WarehouseFactory,
) -> None:
    make_warehouse("alter table raw_shop.products alter price type decimal(10,2)")
    result = verify_contract(CHECKS_DIR / "raw/shop/products.yml", DATASOURCE)

    assert check(result, "schema").outcome is Outcome.FAILED
    assert "price expected decimal(12,2) got decimal(10,2)" in result.failure_message().lower()


def test_extra_dlt_columns_are_allowed_in_raw_but_not_in_marts(
    make_warehouse: WarehouseFactory,
) -> None:
    make_warehouse(
        "alter table raw_shop.customers add column phone varchar",
        "alter table analytics_marts_audit.dim_customers add column phone varchar",
    )
    assert verify_contract(CHECKS_DIR / "raw/shop/customers.yml", DATASOURCE).passed
    marts = verify_contract(CHECKS_DIR / "marts/dim_customers.yml", DATASOURCE)
    assert "unexpected columns: phone" in marts.failure_message()


def test_stale_data_warns_in_the_report_without_failing_the_gate(make_warehouse: WarehouseFactory) -> None:
    from flows.report import RunSummary

    make_warehouse("update raw_shop.orders set updated_at = now() - interval 100 hour")
    result = verify_contract(CHECKS_DIR / "raw/shop/orders.yml", DATASOURCE)

    assert result.passed
    assert check(result, "freshness").outcome is Outcome.WARN
    (warning,) = RunSummary(warehouse="duckdb", contracts=[result]).warnings
    assert warning.startswith("contract raw_shop.orders: check 'freshness' warned (freshness=100.")


def test_a_fresh_demo_history_passes_the_freshness_checks(make_warehouse: WarehouseFactory) -> None:
    """``elt demo`` seeds a history ending now: its newest rows are inside every raw freshness
    check, so a first demo warns about nothing (the tests' fixed history is years old)."""
    from datetime import UTC, datetime

    from standins import ticket_store_for
    from standins.dataset import generate
    from standins.rest_api import ticket

    ends_at = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    data = generate(500, ends_at=ends_at)
    tickets = ticket_store_for(data)
    path = make_warehouse(
        "delete from raw_shop.customers",
        "delete from raw_shop.orders",
        "delete from raw_example_tickets.tickets",
    )
    with duckdb.connect(str(path)) as con:
        con.executemany(
            "insert into raw_shop.customers values (?, ?, ?, ?, ?, ?, ?, ?, 'l1', 'c')", data.customers
        )
        con.executemany("insert into raw_shop.orders values (?, ?, ?, ?, ?, ?, 'l1', 'o')", data.orders)
        recent_tickets = [ticket(i, tickets.t0) for i in range(20)]
        con.executemany(
            "insert into raw_example_tickets.tickets (id, created_at, updated_at) values (?, ?, ?)",
            [(t["id"], t["created_at"], t["updated_at"]) for t in recent_tickets],
        )

    for contract in ("raw/shop/customers.yml", "raw/shop/orders.yml", "raw/example_tickets/tickets.yml"):
        result = verify_contract(CHECKS_DIR / contract, DATASOURCE)
        assert check(result, "freshness").outcome is Outcome.PASSED, result.failure_message()
    assert max(order[5] for order in data.orders) <= ends_at  # nothing dated in the future


def test_a_layers_contracts_share_one_connection(make_warehouse: WarehouseFactory) -> None:
    make_warehouse()
    contracts = [CHECKS_DIR / "raw/shop/customers.yml", CHECKS_DIR / "raw/shop/orders.yml"]
    results = []

    opens = count_opens(lambda: results.extend(verify_contracts(contracts, DATASOURCE)))
    assert len(results) == 2 and all(result.passed for result in results)
    assert opens == 1


def test_empty_table_fails_row_count(make_warehouse: WarehouseFactory) -> None:
    make_warehouse("delete from raw_stripe.refunds")
    result = verify_contract(CHECKS_DIR / "raw/stripe/refunds.yml", DATASOURCE)

    assert [c.label for c in result.failed_checks] == ["row_count"]
    assert "check 'row_count' failed (row_count=0)" in result.failure_message()


TYPO_CHECK_TYPE = """
dataset: warehouse/raw_shop/customers
checks:
  - schema:
      allow_extra_columns: true
  - row_cont:
columns:
  - name: id
    checks:
      - missing:
"""


def test_typo_in_check_type_fails_loudly(make_warehouse: WarehouseFactory, tmp_path: Path) -> None:
    make_warehouse()
    result = verify_contract(write_contract(tmp_path, TYPO_CHECK_TYPE), DATASOURCE)

    assert not result.passed
    assert "row_cont" in (result.error or "")


def test_typo_in_check_type_fails_even_without_schema_validation(
    make_warehouse: WarehouseFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Second line of defence: Soda's own ERROR status (it runs no checks at all) fails too."""
    make_warehouse()
    monkeypatch.setattr("flows.checks.contract_schema_errors", lambda doc: [])
    result = verify_contract(write_contract(tmp_path, TYPO_CHECK_TYPE), DATASOURCE)

    assert not result.passed
    assert result.checks == []
    assert "Invalid check type 'row_cont'" in (result.error or "")


def test_typo_in_check_option_fails_loudly(make_warehouse: WarehouseFactory, tmp_path: Path) -> None:
    """Soda silently ignores unknown keys; a dropped `allow_extra_columns` would change the verdict."""
    make_warehouse()
    contract = write_contract(
        tmp_path,
        """
dataset: warehouse/raw_shop/customers
checks:
  - schema:
      allow_extra_column: true
columns:
  - name: id
    checks:
      - missing:
          threshhold:
            must_be: 0
""",
    )
    result = verify_contract(contract, DATASOURCE)

    assert not result.passed
    assert "'allow_extra_column' was unexpected" in (result.error or "")
    assert "'threshhold' was unexpected" in (result.error or "")


def test_invalid_yaml_fails(make_warehouse: WarehouseFactory, tmp_path: Path) -> None:
    make_warehouse()
    result = verify_contract(write_contract(tmp_path, "dataset: [unclosed\n"), DATASOURCE)
    assert not result.passed
    assert "not valid YAML" in (result.error or "")


def test_contract_for_missing_table_fails(make_warehouse: WarehouseFactory, tmp_path: Path) -> None:
    make_warehouse()
    contract = write_contract(
        tmp_path,
        """
dataset: warehouse/raw_shop/no_such_table
checks:
  - schema:
  - row_count:
columns:
  - name: id
    checks:
      - missing:
""",
    )
    result = verify_contract(contract, DATASOURCE)

    assert not result.passed
    assert result.dataset == "raw_shop.no_such_table"
    assert result.checks and all(c.outcome is Outcome.ERROR for c in result.checks)
    assert "does not exist" in (result.error or "")
    assert "table raw_shop.no_such_table" in result.failure_message()


def test_missing_contract_file_fails(make_warehouse: WarehouseFactory, tmp_path: Path) -> None:
    make_warehouse()
    result = verify_contract(tmp_path / "nope.yml", DATASOURCE)
    assert not result.passed
    assert "not found" in (result.error or "")


def test_not_evaluated_counts_as_failure(make_warehouse: WarehouseFactory, tmp_path: Path) -> None:
    """A catalog in the qualifier is the real trap: data checks pass, the schema check is skipped.

    Soda's DuckDB dialect reads the first prefix as the schema, so the schema check looks
    for columns in schema 'warehouse', finds none and ends NOT_EVALUATED, while the data
    queries (FROM warehouse.raw_shop.customers) work. Soda itself calls that run OK.
    """
    make_warehouse()
    contract = write_contract(
        tmp_path,
        """
dataset: warehouse/warehouse/raw_shop/customers
checks:
  - schema:
      allow_extra_columns: true
  - row_count:
columns:
  - name: id
    checks:
      - missing:
""",
    )
    from soda_core.contracts.api.verify_api import verify_contract_locally

    soda_session = verify_contract_locally(
        data_source_file_path=str(DATASOURCE), contract_file_path=str(contract)
    )
    assert soda_session.is_ok  # Soda's own verdict: fine

    result = verify_contract(contract, DATASOURCE)
    assert not result.passed
    assert result.error is None
    assert check(result, "schema").outcome is Outcome.NOT_EVALUATED
    assert check(result, "row_count").outcome is Outcome.PASSED
    assert "check 'schema' was not evaluated" in result.failure_message()


def test_unset_env_var_fails_without_creating_a_file(
    make_warehouse: WarehouseFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    make_warehouse()
    monkeypatch.delenv("ELT_DUCKDB_PATH")
    monkeypatch.chdir(tmp_path)
    result = verify_contract(CHECKS_DIR / "raw/shop/customers.yml", DATASOURCE)

    assert not result.passed
    assert "ELT_DUCKDB_PATH" in (result.error or "")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["warehouse.duckdb"]


def test_secret_values_are_masked(
    make_warehouse: WarehouseFactory,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A driver error that echoes a config value must not leak a secret-named env var."""
    make_warehouse()
    monkeypatch.setenv("ELT_TEST_PASSWORD", "hunter2-secret")
    datasource = write_contract(
        tmp_path,
        """
type: duckdb
name: warehouse
connection:
  database: ${env.ELT_DUCKDB_PATH}
  read_only: true
  configuration:
    threads: ${env.ELT_TEST_PASSWORD}
""",
        name="datasource.yml",
    )
    with caplog.at_level("ERROR"):
        result = verify_contract(CHECKS_DIR / "raw/shop/customers.yml", datasource)

    assert not result.passed
    assert "***" in (result.error or "")
    assert "hunter2-secret" not in result.failure_message()
    assert "hunter2-secret" not in caplog.text


def test_run_contracts_verifies_all_before_raising(
    make_warehouse: WarehouseFactory,
) -> None:
    make_warehouse(
        "alter table raw_stripe.charges drop column paid",
        "update raw_shop.products set id = null where id = 11",
    )
    with pytest.raises(ContractsFailed) as failure:
        run_contracts.fn("raw", DATASOURCE, sources=FIXTURE_SOURCES)

    message = str(failure.value)
    verified = len(contract_paths("raw", sources=FIXTURE_SOURCES))
    assert message.startswith(f"2 of {verified} raw contracts failed:")
    assert (
        "table raw_stripe.charges, check 'schema' failed (schema_events_count=1; missing columns: paid)"
        in message
    )
    assert "table raw_shop.products, check 'missing id' failed (missing_count=1)" in message
    assert len(failure.value.results) == verified


def test_run_contracts_returns_results_when_all_pass(
    make_warehouse: WarehouseFactory, tmp_path: Path
) -> None:
    make_warehouse()
    checks_dir = tmp_path / "checks"
    (checks_dir / "marts").mkdir(parents=True)
    for contract in FIXTURE_MARTS:
        shutil.copy(contract, checks_dir / "marts" / contract.name)
    results = run_contracts.fn("marts", DATASOURCE, checks_dir=checks_dir)
    assert [r.dataset for r in results] == [
        "analytics_marts_audit.dim_customers",
        "analytics_marts_audit.fct_orders",
    ]


def test_run_contracts_rejects_unknown_layer_and_empty_dirs(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        run_contracts.fn("staging", DATASOURCE)
    with pytest.raises(ContractsFailed, match="no contracts found"):
        run_contracts.fn("raw", DATASOURCE, checks_dir=tmp_path)


def test_failure_message_format() -> None:
    result = ContractResult(
        contract=CHECKS_DIR / "marts/fct_orders.yml",
        dataset="analytics_marts.fct_orders",
        passed=False,
        checks=[
            CheckRecord("No missing values", "missing", "id", Outcome.FAILED, "missing_count", 3),
            CheckRecord("Row count", "row_count", None, Outcome.PASSED, "row_count", 10),
        ],
    )
    assert result.failure_message() == (
        "contract checks/marts/fct_orders.yml failed: table analytics_marts.fct_orders, "
        "check 'missing id' failed (missing_count=3)"
    )
