"""The Stripe dlt source against the local stand-in, through a real dlt pipeline into DuckDB.

Pins the contract other layers rely on: a full read by `created`, then changes from the
events feed (updates, refunds, deletes) merged on `id`, row counts and sums equal to the
stand-in's truth after every run (also under injected faults and paging quirks), JSON
nested objects, minor-unit money, the schema-drift policy and secret-free errors.
"""

from __future__ import annotations

import logging
import socket
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dlt
import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

import dlt_sources.stripe as stripe_module
from dlt_sources.common.http import ApiAuthError, ApiError
from dlt_sources.errors import SourceError, SourceUnreachable
from dlt_sources.stripe import StripeClient, stripe_source
from flows.ingest import _schema_changes, contract_error_in
from standins.stripe_api import FAULT_KINDS, StripeStore, serve_stripe
from tests.support.duckdb import query
from tests.support.stripe import (
    API_KEY,
    N_CHARGES,
    N_CUSTOMERS,
    N_INVOICES,
    N_REFUNDS,
    T0,
    TABLES,
    Clock,
    charge,
    make_changes,
    seed,
    truth,
    warehouse,
)

pytestmark = pytest.mark.slow

DATASET = "raw_stripe"  # read by the make_pipeline fixture in conftest.py
PipelineFactory = Callable[[str], dlt.Pipeline]


@pytest.fixture(autouse=True)
def _isolated_dlt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No telemetry, and no config/state from the developer's machine or the repo."""
    monkeypatch.setenv("RUNTIME__DLTHUB_TELEMETRY", "false")
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "dlt_data"))
    monkeypatch.delenv("SOURCES__STRIPE__API_KEY", raising=False)
    monkeypatch.delenv("SOURCES__STRIPE__BASE_URL", raising=False)
    monkeypatch.delenv("SOURCES__STRIPE__SCHEMA_POLICY", raising=False)
    monkeypatch.chdir(tmp_path)  # dlt reads ./.dlt/*.toml


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(clock: Clock) -> StripeStore:
    return seed(StripeStore(clock=clock))


@pytest.fixture
def base_url(store: StripeStore) -> Iterator[str]:
    with serve_stripe(store, API_KEY) as url:
        yield url


def table_counts(db_path: Path) -> dict[str, int]:
    return {t: query(db_path, f"select count(*) from raw_stripe.{t}")[0][0] for t in TABLES}


def loaded_rows(pipeline: dlt.Pipeline) -> dict[str, int]:
    """Rows normalized in the last run, data tables only."""
    counts = pipeline.last_trace.last_normalize_info.row_counts
    return {t: n for t, n in counts.items() if not t.startswith("_dlt")}


def run(pipeline: dlt.Pipeline, source: Any) -> Any:
    return pipeline.run(source, loader_file_format="parquet")


def test_full_then_incremental_syncs_match_the_api(
    store: StripeStore,
    clock: Clock,
    base_url: str,
    make_pipeline: PipelineFactory,
    db_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # configured the way deployments do it: env vars under sources.stripe
    monkeypatch.setenv("SOURCES__STRIPE__API_KEY", API_KEY)
    monkeypatch.setenv("SOURCES__STRIPE__BASE_URL", base_url)
    pipeline = make_pipeline("stripe_incremental")
    n_events = len(store.events())

    # 1) first run: a full read by `created`, plus every event Stripe still has
    run(pipeline, stripe_source())
    expected = {"customers": N_CUSTOMERS, "charges": N_CHARGES, "refunds": N_REFUNDS, "invoices": N_INVOICES}
    assert loaded_rows(pipeline) == {**expected, "events": n_events}
    assert warehouse(db_path) == truth(store)

    # 2) nothing new: only the events feed is read, nothing loaded
    clock.tick(60)
    run(pipeline, stripe_source())
    assert loaded_rows(pipeline) == {}
    resources = pipeline.state["sources"]["stripe"]["resources"]
    assert {table: resources[table]["full_reads"] for table in TABLES} == dict.fromkeys(TABLES, 1)
    assert warehouse(db_path) == truth(store)

    # 3) changes come through the events feed: exactly the new and changed objects
    events_before = len(store.events())
    expected_rows = make_changes(store, clock)
    run(pipeline, stripe_source())
    assert loaded_rows(pipeline) == {**expected_rows, "events": len(store.events()) - events_before}
    assert warehouse(db_path) == truth(store)
    assert query(
        db_path, "select refunded, amount_refunded from raw_stripe.charges where id = 'ch_000003'"
    ) == [(True, charge(3)["amount"])]
    assert query(db_path, "select email from raw_stripe.customers where id = 'cus_000005'") == [
        ("newer5@example.com",)
    ]
    assert query(db_path, "select count(*) from raw_stripe.customers where id = 'cus_000007'") == [(0,)]
    assert query(db_path, "select metadata->>'note' from raw_stripe.charges where id = 'ch_000010'") == [
        ("edited",)
    ]
    assert query(db_path, "select status, amount_paid from raw_stripe.invoices where id = 'in_000002'") == [
        ("paid", 1_002)
    ]
    assert query(
        db_path,
        "select type, object_type, object_id, data->'object'->>'deleted' from raw_stripe.events "
        "where type = 'customer.deleted'",
    ) == [("customer.deleted", "customer", "cus_000007", "true")]
    assert query(db_path, "select count(*), count(distinct id) from raw_stripe.events") == [
        (len(store.events()),) * 2
    ]

    # 4) and quiet again; changes within one second after the cursor are not lost
    run(pipeline, stripe_source())
    assert loaded_rows(pipeline) == {}
    store.update("customers", "cus_000009", name="Same second")  # same clock second as the last run
    run(pipeline, stripe_source())
    assert loaded_rows(pipeline) == {"customers": 1, "events": 1}
    assert warehouse(db_path) == truth(store)

    # the secret is not persisted in the trace, state or schema files
    assert API_KEY not in str(pipeline.last_trace)
    for path in Path(pipeline.pipelines_dir).rglob("*"):
        if path.is_file():
            assert API_KEY.encode() not in path.read_bytes(), path


def test_exact_under_random_faults(clock: Clock, make_pipeline: PipelineFactory, db_path: Path) -> None:
    store = seed(StripeStore(clock=clock, fault_rate=0.2, seed=7, timeout_sleep=0.6, retry_after=0.01))
    pipeline = make_pipeline("stripe_faults")
    with serve_stripe(store, API_KEY) as url:

        def source() -> Any:
            return stripe_source(
                api_key=API_KEY,
                base_url=url,
                page_size=50,
                request_timeout=0.3,
                max_retries=10,
                backoff_factor=0.01,
            )

        run(pipeline, source())
        assert warehouse(db_path) == truth(store)
        make_changes(store, clock)
        run(pipeline, source())
        assert warehouse(db_path) == truth(store)
        clock.tick(5)
        store.refund_charge("ch_000100", 50)
        store.delete_customer("cus_000011")
        run(pipeline, source())
        assert warehouse(db_path) == truth(store)
    assert set(store.faults_served) == set(FAULT_KINDS), store.faults_served


def test_paging_quirks_and_changes_during_a_read(
    store: StripeStore, clock: Clock, base_url: str, make_pipeline: PipelineFactory, db_path: Path
) -> None:
    store.empty_last_page = True  # has_more: true, then an empty page
    store.repeat_last_item = True  # each page repeats the last object of the previous one
    changed: list[str] = []

    def change_while_paging(endpoint: str, served: int) -> None:
        # after the first charges page: change a charge already served, once
        if endpoint == "charges" and not changed:
            changed.append("ch_000359")
            clock.tick(1)
            store.refund_charge("ch_000359", 100)

    store.on_page = change_while_paging
    pipeline = make_pipeline("stripe_paging")
    source = stripe_source(api_key=API_KEY, base_url=base_url, page_size=7).with_resources(
        "charges", "refunds"
    )
    run(pipeline, source)
    assert loaded_rows(pipeline) == {"charges": N_CHARGES, "refunds": N_REFUNDS + 1}
    assert query(db_path, "select count(*), count(distinct id) from raw_stripe.charges") == [(N_CHARGES,) * 2]
    # the charge was served before it changed: stale now, its new state comes with the next
    # sync, because the events cursor was taken before the read
    assert query(db_path, "select amount_refunded from raw_stripe.charges where id = 'ch_000359'") == [(0,)]
    store.on_page = None
    run(pipeline, source)
    assert loaded_rows(pipeline)["charges"] == 1
    assert query(db_path, "select amount_refunded from raw_stripe.charges where id = 'ch_000359'") == [(100,)]
    assert warehouse(db_path, ("charges", "refunds")) == truth(store, ("charges", "refunds"))


def test_expired_events_cursor_falls_back_to_a_full_read(
    store: StripeStore,
    clock: Clock,
    base_url: str,
    make_pipeline: PipelineFactory,
    db_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(stripe_module, "_now", clock)  # the client shares the stand-in's clock
    pipeline = make_pipeline("stripe_expired")
    source = lambda: stripe_source(api_key=API_KEY, base_url=base_url).with_resources("customers")  # noqa: E731
    run(pipeline, source())
    # 31 days later (for the client and for Stripe): events older than 30 days are gone
    later = clock.now + 31 * 86_400
    monkeypatch.setattr(stripe_module, "_now", lambda: later)
    clock.now = later
    store.update("customers", "cus_000001", email="after-gap@example.com")
    with caplog.at_level(logging.WARNING, logger="dlt_sources.stripe"):
        run(pipeline, source())
    assert any("30 days" in r.getMessage() and "customers" in r.getMessage() for r in caplog.records)
    assert loaded_rows(pipeline) == {"customers": N_CUSTOMERS}  # re-read in full
    assert query(db_path, "select email from raw_stripe.customers where id = 'cus_000001'") == [
        ("after-gap@example.com",)
    ]
    assert pipeline.state["sources"]["stripe"]["resources"]["customers"]["full_reads"] == 2


def test_schema_drift_policy(
    store: StripeStore, clock: Clock, base_url: str, make_pipeline: PipelineFactory, db_path: Path
) -> None:
    pipeline = make_pipeline("stripe_drift")

    def source(policy: str) -> Any:
        return stripe_source(api_key=API_KEY, base_url=base_url, schema_policy=policy).with_resources(
            "charges"
        )

    run(pipeline, source("freeze"))
    # a new field is a new column, and the run reports it as a schema change
    clock.tick(1)
    store.update("charges", "ch_000001", risk_level="normal")
    info = run(pipeline, source("freeze"))
    assert "charges.risk_level" in _schema_changes(info, pipeline.default_schema)[1]
    assert query(db_path, "select risk_level from raw_stripe.charges where id = 'ch_000001'") == [("normal",)]

    # a field that changes type: freeze fails naming source, table and column
    clock.tick(1)
    store.update("charges", "ch_000002", amount="511")
    with pytest.raises(PipelineStepFailed) as info:
        run(pipeline, source("freeze"))
    message = str(info.value)
    assert "stripe source" in message and "`charges`" in message and "`amount`" in message
    assert isinstance(info.value.__cause__.__cause__, SourceError)
    assert query(db_path, "select amount from raw_stripe.charges where id = 'ch_000002'") == [(506,)]

    # discard drops the value, the row still loads
    pipeline.drop_pending_packages()
    run(pipeline, source("discard"))
    assert query(db_path, "select amount from raw_stripe.charges where id = 'ch_000002'") == [(None,)]

    # evolve keeps it in a variant column, as dlt names them
    clock.tick(1)
    store.update("charges", "ch_000003", amount="512")
    info = run(pipeline, source("evolve"))
    assert "charges.amount__v_text" in _schema_changes(info, pipeline.default_schema)[1]
    assert query(db_path, "select amount, amount__v_text from raw_stripe.charges where id = 'ch_000003'") == [
        (None, "512")
    ]
    # an undeclared field that changes type is caught by dlt's contract; the flow rewraps it
    clock.tick(1)
    store.update("charges", "ch_000004", risk_level=5)
    with pytest.raises(PipelineStepFailed) as failed:
        run(pipeline, source("freeze"))
    error = contract_error_in("stripe", failed.value)
    assert error is not None
    assert "stripe source: table `charges`, column `risk_level`" in str(error)
    assert "sources.stripe.schema_policy" in str(error)

    with pytest.raises(SourceError, match=r"sources\.stripe\.schema_policy"):
        stripe_source(api_key=API_KEY, base_url=base_url, schema_policy="whatever")


def test_schema_shape(base_url: str, make_pipeline: PipelineFactory, db_path: Path) -> None:
    pipeline = make_pipeline("stripe_shape")
    run(pipeline, stripe_source(api_key=API_KEY, base_url=base_url))

    tables = {
        name
        for (name,) in query(
            db_path,
            "select table_name from information_schema.tables "
            "where table_schema = 'raw_stripe' and table_name not like '_dlt%'",
        )
    }
    assert tables == {*TABLES, "events"}  # no nested child tables

    def types(table: str) -> dict[str, str]:
        return dict(
            query(
                db_path,
                "select column_name, data_type from information_schema.columns "
                f"where table_schema = 'raw_stripe' and table_name = '{table}'",
            )
        )

    charges = types("charges")
    assert charges["metadata"] == "JSON"
    assert charges["created"] == "BIGINT"
    assert charges["amount"] == "BIGINT"
    assert charges["amount_refunded"] == "BIGINT"
    assert charges["description"] == "VARCHAR"  # all-null, still materialized
    assert charges["_dlt_load_id"] == "VARCHAR"
    assert "_dlt_id" not in charges  # Arrow loads skip dlt's normalizer
    assert types("invoices")["lines"] == "JSON"
    assert types("events")["data"] == "JSON"
    assert types("customers")["deleted"] == "BOOLEAN"

    rows = query(
        db_path,
        "select id, amount, currency, customer, status, paid, livemode, "
        "metadata->>'order_id' from raw_stripe.charges where id in ('ch_000017', 'ch_000020') "
        "order by id",
    )
    assert rows == [
        ("ch_000017", 551, "usd", "cus_000017", "failed", False, False, "17"),
        ("ch_000020", 560, "usd", "cus_000020", "succeeded", True, False, "20"),
    ]
    assert query(
        db_path,
        "select metadata->>'shop_customer_id', email from raw_stripe.customers where id = 'cus_000042'",
    ) == [("42", "customer42@example.com")]
    assert query(
        db_path,
        "select charge, amount, reason from raw_stripe.refunds where id = 're_000003'",
    ) == [("ch_000021", 103, "requested_by_customer")]
    assert query(
        db_path, "select lines->'data'->0->>'amount' from raw_stripe.invoices where id = 'in_000004'"
    ) == [("1004",)]

    schema = pipeline.default_schema
    assert schema.name == "stripe"
    for table in (*TABLES, "events"):
        assert schema.get_table(table)["write_disposition"] == "merge"
        assert schema.get_table_columns(table)["id"]["primary_key"] is True
    assert schema.get_table_columns("customers")["deleted"]["hard_delete"] is True


def test_initial_created_and_small_pages(
    store: StripeStore, base_url: str, make_pipeline: PipelineFactory, db_path: Path
) -> None:
    pipeline = make_pipeline("stripe_backfill_window")
    cutoff = T0 + 10_000 + 80  # charges 320.. have created >= cutoff
    source = stripe_source(
        api_key=API_KEY, base_url=base_url, page_size=7, initial_created=cutoff
    ).with_resources("charges")
    run(pipeline, source)
    assert loaded_rows(pipeline) == {"charges": 40}
    assert query(db_path, "select min(id), max(id) from raw_stripe.charges") == [("ch_000320", "ch_000359")]


def test_wrong_api_key_fails_without_leaking_it(base_url: str, make_pipeline: PipelineFactory) -> None:
    bad_key = "sk_test_this_is_not_the_right_key_9876"
    pipeline = make_pipeline("stripe_bad_key")
    with pytest.raises(PipelineStepFailed) as info:
        run(pipeline, stripe_source(api_key=bad_key, base_url=base_url))

    message = str(info.value)
    assert "SOURCES__STRIPE__API_KEY" in message
    assert "sources.stripe.api_key" in message
    assert "401" in message
    full = "".join(traceback.format_exception(info.value))
    assert bad_key not in full
    assert bad_key[-8:] not in full
    assert isinstance(info.value.__cause__.__cause__, ApiAuthError)


def test_missing_api_key_names_the_setting(make_pipeline: PipelineFactory) -> None:
    with pytest.raises(Exception, match="SOURCES__STRIPE__API_KEY"):
        make_pipeline("stripe_no_key").extract(stripe_source(base_url="http://127.0.0.1:1"))
    with pytest.raises(ApiAuthError, match="SOURCES__STRIPE__API_KEY"):
        stripe_source(api_key="  ", base_url="http://127.0.0.1:1")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_server_names_base_url(make_pipeline: PipelineFactory) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    pipeline = make_pipeline("stripe_unreachable")
    source = stripe_source(api_key=API_KEY, base_url=url, max_retries=1, backoff_factor=0.01)
    with pytest.raises(PipelineStepFailed) as info:
        run(pipeline, source)
    message = str(info.value)
    assert "sources.stripe.base_url" in message
    assert "SOURCES__STRIPE__BASE_URL" in message
    assert f"{url}/v1/" in message
    assert API_KEY not in "".join(traceback.format_exception(info.value))

    # a malformed URL is a setting to fix, not an outage: a plain (non-retried) SourceError
    with pytest.raises(SourceError, match=r"sources\.stripe\.base_url") as bad_url:
        stripe_source(api_key=API_KEY, base_url="api.stripe.com")
    assert not isinstance(bad_url.value, SourceUnreachable)


def test_rate_limits_and_5xx_are_retried(
    store: StripeStore, base_url: str, make_pipeline: PipelineFactory, db_path: Path
) -> None:
    store.fail_next(2, status=429, retry_after=0.05)
    store.fail_next(1, status=503)
    pipeline = make_pipeline("stripe_retries")
    run(pipeline, stripe_source(api_key=API_KEY, base_url=base_url, backoff_factor=0.01))
    assert warehouse(db_path) == truth(store)


def test_client_backoff_honours_retry_after(store: StripeStore, base_url: str) -> None:
    sleeps: list[float] = []
    store.fail_next(1, status=429, retry_after=1.5)
    store.fail_next(1, status=500)
    store.fail_next(1, status=429, retry_after=999)  # capped by max_backoff
    with StripeClient(
        API_KEY,
        base_url,
        max_retries=3,
        backoff_factor=0.25,
        max_backoff=10,
        sleep=sleeps.append,
    ) as client:
        pages = list(client.paginate("refunds", {"created[gte]": 0}, page_size=100))
        assert sum(len(p) for p in pages) == N_REFUNDS
        assert API_KEY not in repr(client)
    # Retry-After wins (and is capped by max_backoff); otherwise 0.25 * 2**1 with jitter
    assert sleeps[0] == 1.5 and 0.25 <= sleeps[1] <= 0.5 and sleeps[2] == 10

    store.fail_next(3, status=503)
    with StripeClient(API_KEY, base_url, max_retries=2, sleep=sleeps.append) as client:
        with pytest.raises(ApiError, match="HTTP 503 after 3 attempts") as info:
            client.get_json("/v1/charges")
        assert info.value.status == 503

    with StripeClient(API_KEY, base_url, sleep=sleeps.append) as client:
        with pytest.raises(ApiError, match="No such charge") as info:
            client.get_json("/v1/charges", {"starting_after": "ch_missing"})
        assert info.value.status == 400
