"""The privacy logic without a warehouse: the load path's guard, subjects, the PII map, the SQL."""

from __future__ import annotations

import textwrap

import orjson
import pyarrow as pa
import pytest

from dlt_sources.common.privacy import (
    DELETE,
    REDACT,
    TablePrivacy,
    TombstoneGuard,
    Tombstones,
    keyed_hash,
    pii,
    subject,
)
from dlt_sources.registry import SOURCES
from flows.config import load_settings
from flows.errors import ConfigError
from flows.privacy.matching import WarehouseFinds
from flows.privacy.places import AUDIT, DLT_STAGING, MART, QUARANTINE, RAW, REJECTED, VIEW, privacy_map
from flows.privacy.subjects import Subject

KEY = b"k" * 32
CUSTOMERS = TablePrivacy.from_hints(
    {"id": subject("shop_customer"), "email": pii("email", subject="email"), "name": pii("name")}, DELETE
)
ORDERS = TablePrivacy.from_hints({"customer_id": subject("shop_customer")}, REDACT)
PROFILES = TablePrivacy.from_hints(
    {"metadata": subject("shop_customer", json_field="shop_customer_id")}, DELETE
)
CHARGES = TablePrivacy.from_hints({"customer": subject("stripe_customer")}, REDACT)
EVENTS = TablePrivacy(DELETE, mentions=("data",))  # any identifier of a kind the source declares
PRIVACY = {
    "customers": CUSTOMERS,
    "orders": ORDERS,
    "profiles": PROFILES,
    "charges": CHARGES,
    "events": EVENTS,
}


def tombstones(*identifiers: tuple[str, object]) -> Tombstones:
    return Tombstones(KEY, frozenset(keyed_hash(KEY, kind, value) for kind, value in identifiers))


def test_keyed_hash_compares_normalised_values_and_depends_on_the_key() -> None:
    assert keyed_hash(KEY, "email", " Alice@Example.COM ") == keyed_hash(KEY, "email", "alice@example.com")
    assert keyed_hash(KEY, "shop_customer", 123) == keyed_hash(KEY, "shop_customer", "123")
    assert keyed_hash(KEY, "stripe_customer", "cus_A") != keyed_hash(KEY, "stripe_customer", "cus_a")
    assert keyed_hash(KEY, "email", "a@x.io") != keyed_hash(b"other key", "email", "a@x.io")
    assert "a@x.io" not in keyed_hash(KEY, "email", "a@x.io")


def test_the_guard_drops_a_forgotten_customers_rows_and_counts_them() -> None:
    guard = TombstoneGuard(PRIVACY, tombstones(("email", "gone@example.com")))
    batch = pa.table(
        {"id": [1, 2, 3], "email": ["a@example.com", "GONE@example.com", None], "name": ["A", "G", "C"]}
    )
    kept = guard.apply("customers", batch)
    assert kept.column("id").to_pylist() == [1, 3]
    assert guard.counts() == {"customers": 1}
    # a batch of nobody else is not loaded at all (no empty load file)
    assert guard.apply("customers", batch.slice(1, 1)) is None


def test_the_guard_redacts_a_kept_table_and_leaves_its_amounts() -> None:
    guard = TombstoneGuard(PRIVACY, tombstones(("shop_customer", 7)))
    batch = pa.table({"id": [10, 11], "customer_id": [7, 8], "amount": [5.0, 6.0]})
    kept = guard.apply("orders", batch)
    assert kept.to_pylist() == [
        {"id": 10, "customer_id": None, "amount": 5.0},
        {"id": 11, "customer_id": 8, "amount": 6.0},
    ]
    assert guard.counts() == {"orders": 1}


def test_the_guard_reads_a_json_field_json_payloads_and_rows_as_dicts() -> None:
    guard = TombstoneGuard(PRIVACY, tombstones(("shop_customer", 7), ("stripe_customer", "cus_gone")))
    profiles = pa.table({"metadata": ['{"shop_customer_id": "7"}', '{"shop_customer_id": "8"}', None]})
    assert guard.apply("profiles", profiles).num_rows == 2
    events = [{"id": "e1", "data": orjson.dumps({"object": {"customer": "cus_gone"}}).decode()}, {"id": "e2"}]
    assert guard.apply("events", events) == [{"id": "e2"}]
    assert guard.apply("customers", {"id": 7, "email": "x@y.z"}) is None
    assert guard.apply("products", pa.table({"id": [7]})).num_rows == 1  # names nobody


def test_rejected_records_are_judged_by_their_tables_identifiers_even_when_cut_short() -> None:
    guard = TombstoneGuard(PRIVACY, tombstones(("shop_customer", 7), ("email", "gone@example.com")))
    whole = orjson.dumps({"id": 7, "email": "other@example.com"}).decode()
    cut = '{"id": 9, "email": "gone@example.com", "note": "trunc'
    unrelated = orjson.dumps({"id": 9, "quantity": 7}).decode()
    rows = [
        {"table_name": "customers", "record": whole},
        {"table_name": "customers", "record": cut},
        {"table_name": "order_items", "record": unrelated},
    ]
    assert guard.apply("_rejected_records", rows) == [rows[2]]
    assert guard.counts() == {"_rejected_records": 2}


def test_a_subject_is_kind_and_value_and_never_shows_its_value() -> None:
    person = Subject.parse("email: Alice@Example.com")
    assert (person.kind, person.value) == ("email", "alice@example.com")
    assert "alice" not in repr(person)
    with pytest.raises(
        ConfigError, match=r"unknown subject kind 'phone'.*the kinds are email, shop_customer"
    ):
        Subject.parse("phone:+4912345")
    with pytest.raises(ConfigError, match="KIND:VALUE"):
        Subject.parse("alice@example.com")


def test_every_declared_identifier_kind_is_a_known_kind() -> None:
    kinds = {c.kind for spec in SOURCES.values() for table in spec.privacy.values() for c in table.subjects}
    assert kinds == {"email", "shop_customer", "stripe_customer"}
    for spec in SOURCES.values():
        for table, declared in spec.privacy.items():
            assert table in spec.tables
            assert set(declared.redacted) >= {c.column for c in declared.subjects}


MANIFEST = {
    "nodes": {
        "model.elt.dim_customers": {
            "resource_type": "model",
            "name": "dim_customers",
            "alias": "dim_customers",
            "config": {"materialized": "table", "meta": {"erasure": "delete"}},
            "columns": {"customer_id": {"config": {"meta": {"subject": "shop_customer"}}}},
        },
        "model.elt.stg_shop__customers": {
            "resource_type": "model",
            "name": "stg_shop__customers",
            "config": {"materialized": "view"},
            "columns": {"email": {"meta": {"pii": "email", "subject": "email"}}},
        },
        "model.elt.fct_revenue_daily": {
            "resource_type": "model",
            "name": "fct_revenue_daily",
            "config": {"materialized": "table"},
            "columns": {"revenue": {}},
        },
    }
}


def test_the_map_places_every_environments_copy_and_leaves_out_tables_holding_nobody() -> None:
    catalog = [
        ("raw_shop", "customers", "email", "VARCHAR"),
        ("dev_ci_raw_shop", "customers", "email", "VARCHAR"),
        ("raw_stripe_staging", "charges", "customer", "VARCHAR"),
        ("raw_stripe", "_rejected_records", "record", "VARCHAR"),
        ("raw_shop", "products", "name", "VARCHAR"),
        ("xraw_shop", "customers", "email", "VARCHAR"),
        ("analytics_marts", "dim_customers", "customer_id", "BIGINT"),
        ("analytics_marts_quarantine", "dim_customers__run_1", "customer_id", "BIGINT"),
        ("analytics_marts", "fct_revenue_daily", "revenue", "DECIMAL"),
        ("analytics_staging", "stg_shop__customers", "email", "VARCHAR"),
        ("elt_audit", "profiles", "detail", "VARCHAR"),
        ("elt_audit", "loads", "rows", "BIGINT"),
    ]
    places = {place.name: place.kind for place in privacy_map(catalog, MANIFEST)}
    assert places == {
        "raw_shop.customers": RAW,
        "dev_ci_raw_shop.customers": RAW,
        "raw_stripe_staging.charges": DLT_STAGING,
        "raw_stripe._rejected_records": REJECTED,
        "analytics_marts.dim_customers": MART,
        "analytics_marts_quarantine.dim_customers__run_1": QUARANTINE,
        "analytics_staging.stg_shop__customers": VIEW,
        "elt_audit.profiles": AUDIT,
        "elt_audit.loads": AUDIT,
    }


def test_the_conditions_bind_every_value_and_quote_as_each_warehouse_does() -> None:
    catalog = [
        ("raw_stripe", "customers", "id", "VARCHAR"),
        ("raw_stripe", "customers", "email", "VARCHAR"),
        ("raw_stripe", "customers", "metadata", "JSON"),
        ("raw_stripe", "events", "data", "JSON"),
    ]
    places = {place.table: place for place in privacy_map(catalog, {})}
    found = {"email": {"a@x.io"}, "shop_customer": {"7"}}
    finds = WarehouseFinds(load_settings("duckdb"))
    where, parameters = finds.where(places["customers"], found)
    assert "a@x.io" not in where and "7" not in where
    assert where == (
        """(trim(json_extract_string("metadata", '$.shop_customer_id')) in (%s))"""
        """ or (lower(trim(cast("email" as varchar))) in (%s))"""
    )
    assert parameters == ["7", "a@x.io"]
    where, parameters = finds.where(places["events"], found)
    assert (
        where
        == """(contains(lower(cast("data" as varchar)), %s)) or (contains(cast("data" as varchar), %s))"""
    )
    assert parameters == ['"a@x.io"', '"7"']


def test_a_declared_source_names_its_people_in_yaml_and_mistakes_name_the_field(tmp_path) -> None:
    from dlt_sources.sql_database import declared_databases
    from dlt_sources.sql_database.config import SqlConfigError

    body = """
        credentials: "{{ secrets.sources.crm.credentials }}"
        tables:
          - name: contacts
            primary_key: id
        privacy:
          contacts:
            erasure: redact
            columns:
              email: {pii: email, subject: email}
              profile: {subject: shop_customer, field: customer_id}
    """
    (tmp_path / "crm.yml").write_text(textwrap.dedent(body))
    declared = declared_databases(tmp_path)["crm"].privacy["contacts"]
    assert declared.policy == REDACT
    assert [(s.column, s.kind, s.json_field) for s in declared.subjects] == [
        ("email", "email", None),
        ("profile", "shop_customer", "customer_id"),
    ]
    (tmp_path / "crm.yml").write_text(textwrap.dedent(body).replace("redact", "shred"))
    with pytest.raises(SqlConfigError, match=r"crm.yml: privacy.contacts: erasure policy 'shred' is not one"):
        declared_databases(tmp_path)
    (tmp_path / "crm.yml").write_text(
        textwrap.dedent(body).replace("contacts:\n    erasure", "leads:\n    erasure")
    )
    with pytest.raises(SqlConfigError, match="privacy tables leads are not among its tables"):
        declared_databases(tmp_path)
