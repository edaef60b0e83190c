"""The Stripe dlt source against the local stand-in, through a real dlt pipeline into DuckDB.

Pins the contract other layers rely on: merge on `id`, incremental on `created` with
server-side filtering, JSON `metadata`, minor-unit money, and secret-free error messages.
"""

from __future__ import annotations

import socket
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dlt
import duckdb
import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from dlt_sources.common.http import ApiAuthError, ApiError
from dlt_sources.errors import SourceError, SourceUnreachable
from dlt_sources.stripe import StripeClient, stripe_source
from flows.demo.stripe_api import StripeStore, serve_stripe

API_KEY = "sk_test_integration_4242"
T0 = 1_700_000_000
N_CUSTOMERS, N_CHARGES, N_REFUNDS = 120, 360, 40

PipelineFactory = Callable[[str], dlt.Pipeline]


def customer(i: int) -> dict[str, Any]:
    return {
        "id": f"cus_{i:06d}",
        "object": "customer",
        "created": T0 + i * 60,
        "email": f"customer{i}@example.com",
        "name": f"Customer {i}",
        "livemode": False,
        "metadata": {"shop_customer_id": str(i)},
    }


def charge(i: int, created: int | None = None) -> dict[str, Any]:
    failed = i % 17 == 0
    return {
        "id": f"ch_{i:06d}",
        "object": "charge",
        "amount": 500 + i * 3,
        "amount_refunded": 0,
        "currency": "usd",
        "customer": f"cus_{i % N_CUSTOMERS:06d}",
        # several charges per second: `created` ties exercise the boundary dedup
        "created": T0 + 10_000 + i // 4 if created is None else created,
        "status": "failed" if failed else "succeeded",
        "paid": not failed,
        "refunded": False,
        "livemode": False,
        "metadata": {"order_id": str(i)},
        "description": None,
    }


def refund(i: int) -> dict[str, Any]:
    return {
        "id": f"re_{i:06d}",
        "object": "refund",
        "amount": 100 + i,
        "charge": f"ch_{i * 7:06d}",
        "currency": "usd",
        "created": T0 + 20_000 + i // 2,
        "status": "succeeded",
        "reason": "requested_by_customer",
    }


@pytest.fixture(autouse=True)
def _isolated_dlt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No telemetry, and no config/state from the developer's machine or the repo."""
    monkeypatch.setenv("RUNTIME__DLTHUB_TELEMETRY", "false")
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "dlt_data"))
    monkeypatch.delenv("SOURCES__STRIPE__API_KEY", raising=False)
    monkeypatch.delenv("SOURCES__STRIPE__BASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)  # dlt reads ./.dlt/*.toml


@pytest.fixture
def store() -> StripeStore:
    store = StripeStore()
    store.extend("customers", [customer(i) for i in range(N_CUSTOMERS)])
    store.extend("charges", [charge(i) for i in range(N_CHARGES)])
    store.extend("refunds", [refund(i) for i in range(N_REFUNDS)])
    return store


@pytest.fixture
def base_url(store: StripeStore) -> Iterator[str]:
    with serve_stripe(store, API_KEY) as url:
        yield url


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "warehouse.duckdb"


@pytest.fixture
def make_pipeline(tmp_path: Path, db_path: Path) -> PipelineFactory:
    def make(name: str) -> dlt.Pipeline:
        return dlt.pipeline(
            pipeline_name=name,
            destination=dlt.destinations.duckdb(str(db_path)),
            dataset_name="raw_stripe",
            pipelines_dir=str(tmp_path / "pipelines"),
        )

    return make


def query(db_path: Path, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(db_path), read_only=True) as con:
        return con.execute(sql).fetchall()


def table_counts(db_path: Path) -> dict[str, int]:
    return {
        t: query(db_path, f"select count(*) from raw_stripe.{t}")[0][0]
        for t in ("customers", "charges", "refunds")
    }


def loaded_rows(pipeline: dlt.Pipeline) -> dict[str, int]:
    """Rows normalized in the last run, data tables only."""
    counts = pipeline.last_trace.last_normalize_info.row_counts
    return {t: n for t, n in counts.items() if not t.startswith("_dlt")}


def run(pipeline: dlt.Pipeline, source: Any) -> None:
    pipeline.run(source, loader_file_format="parquet")


def test_incremental_syncs(
    store: StripeStore,
    base_url: str,
    make_pipeline: PipelineFactory,
    db_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # configured the way deployments do it: env vars under sources.stripe
    monkeypatch.setenv("SOURCES__STRIPE__API_KEY", API_KEY)
    monkeypatch.setenv("SOURCES__STRIPE__BASE_URL", base_url)
    pipeline = make_pipeline("stripe_incremental")

    # 1) first run loads everything
    run(pipeline, stripe_source())
    expected = {"customers": N_CUSTOMERS, "charges": N_CHARGES, "refunds": N_REFUNDS}
    assert loaded_rows(pipeline) == expected
    assert table_counts(db_path) == expected

    # 2) nothing new: the API is asked only for created >= cursor (one page per
    #    endpoint) and dlt drops the boundary rows it has already seen
    served = store.requests_served
    run(pipeline, stripe_source())
    assert loaded_rows(pipeline) == {}
    assert store.requests_served - served == 3
    assert table_counts(db_path) == expected

    # 3) new charges, some sharing the previous max `created` second, plus an
    #    update of an old charge (Stripe keeps `created`, so the cursor skips it)
    max_created = max(charge(i)["created"] for i in range(N_CHARGES))
    new = [charge(N_CHARGES + i, created=max_created + i // 5) for i in range(25)]
    store.extend("charges", new)
    store.update("charges", "ch_000003", refunded=True, amount_refunded=509)
    run(pipeline, stripe_source())
    assert loaded_rows(pipeline) == {"charges": 25}
    assert table_counts(db_path) == {**expected, "charges": N_CHARGES + 25}
    assert query(db_path, "select count(distinct id) from raw_stripe.charges") == [(N_CHARGES + 25,)]
    assert query(
        db_path,
        "select refunded, amount_refunded from raw_stripe.charges where id = 'ch_000003'",
    ) == [(False, 0)]

    # the secret is not persisted in the trace, state or schema files
    assert API_KEY not in str(pipeline.last_trace)
    for path in Path(pipeline.pipelines_dir).rglob("*"):
        if path.is_file():
            assert API_KEY.encode() not in path.read_bytes(), path


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
    assert tables == {"customers", "charges", "refunds"}  # no nested child tables

    types = dict(
        query(
            db_path,
            "select column_name, data_type from information_schema.columns "
            "where table_schema = 'raw_stripe' and table_name = 'charges'",
        )
    )
    assert types["metadata"] == "JSON"
    assert types["created"] == "BIGINT"
    assert types["amount"] == "BIGINT"
    assert types["amount_refunded"] == "BIGINT"
    assert types["description"] == "VARCHAR"  # all-null, still materialized

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

    schema = pipeline.default_schema
    assert schema.name == "stripe"
    for table in ("customers", "charges", "refunds"):
        assert schema.get_table(table)["write_disposition"] == "merge"
        assert schema.get_table_columns(table)["id"]["primary_key"] is True


def test_initial_created_and_small_pages(
    store: StripeStore, base_url: str, make_pipeline: PipelineFactory, db_path: Path
) -> None:
    pipeline = make_pipeline("stripe_backfill_window")
    cutoff = T0 + 10_000 + 80  # charges 320.. have created >= cutoff
    source = stripe_source(
        api_key=API_KEY, base_url=base_url, page_size=7, initial_created=cutoff
    ).with_resources("charges")
    served = store.requests_served
    run(pipeline, source)
    assert loaded_rows(pipeline) == {"charges": 40}
    assert store.requests_served - served == 6  # ceil(40 / 7)
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
    assert table_counts(db_path) == {
        "customers": N_CUSTOMERS,
        "charges": N_CHARGES,
        "refunds": N_REFUNDS,
    }


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
