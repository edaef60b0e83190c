"""Column lineage from SQL, the stored graph's walks, origins and the transport setting."""

from __future__ import annotations

import pytest

from dlt_sources.common.lineage import api_namespace, database_namespace
from flows.errors import ConfigError
from flows.lineage.columns import Kind, LineageUnavailable, column_lineage
from flows.lineage.emitter import lineage_settings
from flows.lineage.model import FieldSource
from flows.lineage.store import ColumnGraph, DatasetLineage, flatten

CATALOG = {
    "wh": {
        "raw": {
            "charges": {"id": "varchar", "amount": "bigint", "email": "varchar", "created": "bigint"},
            "refunds": {"id": "varchar", "charge": "varchar", "amount": "bigint"},
        }
    }
}


def sources(sql: str) -> dict[str, set[tuple[str, str, Kind]]]:
    return {
        column: {(s.table, s.column, s.kind) for s in found}
        for column, found in column_lineage(sql, CATALOG, "duckdb").items()
    }


def test_each_output_column_names_its_input_columns_and_how_it_derives() -> None:
    lineage = sources(
        """
        with charges as (select * from wh.raw.charges),
        paid as (select id as charge_id, cast(amount as double) / 100 as amount, md5(email) as email_hash
                 from charges)
        select charge_id, amount, email_hash, 'stripe' as origin from paid
        """
    )
    assert lineage == {
        "charge_id": {("charges", "id", Kind.IDENTITY)},
        "amount": {("charges", "amount", Kind.TRANSFORMATION)},
        "email_hash": {("charges", "email", Kind.MASKED)},
        "origin": set(),  # a literal comes from no column
    }


def test_unions_joins_and_aggregates_follow_every_branch() -> None:
    lineage = sources(
        """
        select c.id, sum(r.amount) as refunded from wh.raw.charges as c
        join wh.raw.refunds as r on r.charge = c.id group by c.id
        union all
        select id, 0 from wh.raw.refunds
        """
    )
    assert lineage["id"] == {("charges", "id", Kind.IDENTITY), ("refunds", "id", Kind.IDENTITY)}
    assert lineage["refunded"] == {("refunds", "amount", Kind.AGGREGATION)}


def test_sql_sqlglot_cannot_read_says_so() -> None:
    with pytest.raises(LineageUnavailable):
        column_lineage("select from where (", CATALOG, "duckdb")


def graph() -> ColumnGraph:
    api = FieldSource("https://api.stripe.com", "/v1/charges", "amount")
    raw = FieldSource("duckdb:///w", "w.raw_stripe.charges", "amount", "IDENTITY")
    staged = FieldSource("duckdb:///w", "w.staging.stg_charges", "amount", "TRANSFORMATION")
    return ColumnGraph(
        {
            ("duckdb:///w", "w.raw_stripe.charges"): DatasetLineage("h1", {"amount": [api]}),
            ("duckdb:///w", "w.staging.stg_charges"): DatasetLineage("h2", {"amount": [raw]}),
            ("duckdb:///w", "w.marts.fct_payments"): DatasetLineage("h3", {"amount": [staged], "kind": []}),
        }
    )


def test_a_mart_column_walks_up_to_the_api_field_and_back_down() -> None:
    lineage = graph()
    ((key, column),) = lineage.find("marts.fct_payments.amount")
    up = [(hop.dataset, hop.field) for hop in flatten(lineage.walk(key, column))]
    assert up == [
        ("w.marts.fct_payments", "amount"),
        ("w.staging.stg_charges", "amount"),
        ("w.raw_stripe.charges", "amount"),
        ("/v1/charges", "amount"),
    ]
    ((key, column),) = lineage.find("raw_stripe.charges.amount")
    down = [hop.dataset for hop in flatten(lineage.walk(key, column, upstream=False))]
    assert down == ["w.raw_stripe.charges", "w.staging.stg_charges", "w.marts.fct_payments"]


def test_a_table_without_a_column_and_an_unknown_name() -> None:
    lineage = graph()
    assert lineage.find("marts.fct_payments") == [(("duckdb:///w", "w.marts.fct_payments"), None)]
    assert lineage.columns_of(("duckdb:///w", "w.marts.fct_payments")) == ["amount", "kind"]
    assert lineage.find("marts.nothing.amount") == []


def test_namespaces_never_carry_credentials() -> None:
    assert database_namespace("postgresql+psycopg2://user:s3cret@db.internal:5433/shop?sslmode=require") == (
        "postgres://db.internal:5433/shop"
    )
    assert database_namespace("mysql+pymysql://u:p@127.0.0.1/inventory") == "mysql://127.0.0.1/inventory"
    assert api_namespace("https://key:x@api.example.com/v2/?token=abc") == "https://api.example.com/v2"


def test_the_transport_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ELT_LINEAGE_TRANSPORT", raising=False)
    assert lineage_settings().transports == ("file",)
    monkeypatch.setenv("ELT_LINEAGE_TRANSPORT", "none")
    assert lineage_settings().transports == ()
    monkeypatch.setenv("ELT_LINEAGE_TRANSPORT", "kafka")
    with pytest.raises(ConfigError, match="ELT_LINEAGE_TRANSPORT"):
        lineage_settings()
    monkeypatch.setenv("ELT_LINEAGE_TRANSPORT", "file,http")
    monkeypatch.delenv("ELT_LINEAGE_URL", raising=False)
    with pytest.raises(ConfigError, match="ELT_LINEAGE_URL"):
        lineage_settings()
    monkeypatch.setenv("ELT_LINEAGE_URL", "http://127.0.0.1:5000")
    monkeypatch.setenv("LINEAGE__API_KEY", "lineage-key-never-shown")
    settings = lineage_settings()
    assert settings.transports == ("file", "http") and settings.api_key == "lineage-key-never-shown"
    assert "lineage-key-never-shown" not in repr(settings)
