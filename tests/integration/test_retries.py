"""No Stripe record is lost or duplicated by a retry, at any layer.

Real components throughout: the Stripe stand-in on 127.0.0.1, the ELT ingest path
(``flows.ingest.run_source`` / the Prefect ``ingest`` task) with real dlt into a DuckDB
file in tmp_path, and real Prefect task retries under the session test server.

* HTTP layer: faults the client's own retries absorb (429 + Retry-After, 5xx, truncated
  bodies) are covered against a bare dlt pipeline in ``test_stripe_source.py``
  (``test_rate_limits_and_5xx_are_retried``, ``test_exact_under_random_faults``); here the
  whole-flow test also runs through ``run_source`` under seeded random faults.
* Task layer: an outage that outlasts the HTTP retries in the middle of paging fails the
  first attempt of ``ingest``; Prefect's retry completes it, exactly.
* Whole-flow layer: a run that fails for good mid-extract, then a fresh worker (no local
  dlt folder, state only in the warehouse) resumes and ends equal to the truth.

"Equal to the truth" is count, count(distinct id) and the money sums per table, as in
``test_stripe_source.py``; plus the events table has each event id exactly once.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dlt_sources.common.http import ApiError
from flows.config import Settings, load_settings
from flows.elt import EltRunFailed
from flows.ingest import IngestFailed, is_transient, run_source
from flows.ingest_source import ingest_source
from flows.results import IngestResult
from standins.stripe_api import StripeStore, serve_stripe
from tests.support.duckdb import query
from tests.support.stripe import (
    API_KEY,
    N_CHARGES,
    TABLES,
    Clock,
    charge,
    make_changes,
    seed,
    truth,
    warehouse,
)

pytestmark = pytest.mark.slow

MAX_RETRIES = 2  # HTTP retries per request (3 attempts): an outage needs 3+ failures in a row
PAGE_SIZE = 20  # many pages per list, so a failure lands mid-paging


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(clock: Clock) -> StripeStore:
    return seed(StripeStore(clock=clock))


@pytest.fixture
def settings(store: StripeStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """The ELT settings, warehouse and dlt folders in tmp_path, Stripe pointed at the stand-in."""
    monkeypatch.chdir(tmp_path)  # dlt reads ./.dlt/*.toml
    monkeypatch.setenv("ELT_DATA_DIR", str(tmp_path / "data"))  # pipelines_dir follows it
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "dlt_data"))
    monkeypatch.setenv("ELT_DUCKDB_PATH", str(tmp_path / "warehouse.duckdb"))
    monkeypatch.delenv("ELT_WAREHOUSE", raising=False)
    monkeypatch.delenv("SOURCES__STRIPE__SCHEMA_POLICY", raising=False)
    monkeypatch.setenv("SOURCES__STRIPE__API_KEY", API_KEY)
    monkeypatch.setenv("SOURCES__STRIPE__PAGE_SIZE", str(PAGE_SIZE))
    monkeypatch.setenv("SOURCES__STRIPE__MAX_RETRIES", str(MAX_RETRIES))
    monkeypatch.setenv("SOURCES__STRIPE__BACKOFF_FACTOR", "0.01")
    monkeypatch.setenv("SOURCES__STRIPE__REQUEST_TIMEOUT", "5")
    with serve_stripe(store, API_KEY) as url:
        monkeypatch.setenv("SOURCES__STRIPE__BASE_URL", url)
        chosen = load_settings()
        assert chosen.duckdb_path == tmp_path / "warehouse.duckdb"
        assert chosen.pipelines_dir.is_relative_to(tmp_path)
        yield chosen


def outage_after(store: StripeStore, endpoint: str, pages: int, failures: int = MAX_RETRIES + 1) -> list[int]:
    """Once ``pages`` list pages of ``endpoint`` were served, answer the next ``failures``
    requests with 503: more than the client retries, so the read fails mid-paging.

    Returns a list that gets the page count at which the outage started."""
    served = {"pages": 0}
    started: list[int] = []

    def hook(name: str, _total: int) -> None:
        if name != endpoint or started:
            return
        served["pages"] += 1
        if served["pages"] == pages:
            started.append(served["pages"])
            store.fail_next(failures, status=503)

    store.on_page = hook
    return started


def new_worker(settings: Settings) -> None:
    """Forget the local dlt pipeline folder: state must come back from the warehouse."""
    folder = settings.pipelines_dir / "elt_stripe"
    assert folder.is_dir()
    shutil.rmtree(folder)


def events_exactly_once(settings: Settings, store: StripeStore) -> None:
    assert query(settings.duckdb_path, "select count(*), count(distinct id) from raw_stripe.events") == [
        (len(store.events()),) * 2
    ]
    loaded = {eid for (eid,) in query(settings.duckdb_path, "select id from raw_stripe.events")}
    assert loaded == {event["id"] for event in store.events()}


def ids_equal(settings: Settings, store: StripeStore) -> None:
    for table in TABLES:
        loaded = {oid for (oid,) in query(settings.duckdb_path, f"select id from raw_stripe.{table}")}
        assert loaded == set(store.ids(table)), table


def assert_exact(settings: Settings, store: StripeStore) -> None:
    assert warehouse(settings.duckdb_path) == truth(store)
    ids_equal(settings, store)
    events_exactly_once(settings, store)


def more_changes(store: StripeStore, clock: Clock) -> dict[str, int]:
    """New charges, a refund on an old charge, a deleted customer; rows each table must load."""
    clock.tick(120)
    newest = max(store.get("charges", oid)["created"] for oid in store.ids("charges"))
    store.extend("charges", [charge(N_CHARGES + 100 + i, created=newest + 1 + i // 3) for i in range(12)])
    store.refund_charge("ch_000042", 77, refund_id="re_retry_1")
    store.delete_customer("cus_000013")
    return {"charges": 12 + 1, "refunds": 1, "customers": 1}


# ----------------------------------------------------------------------------- task layer


@pytest.mark.usefixtures("prefect_harness")
def test_prefect_task_retry_after_an_outage_mid_paging(
    store: StripeStore, clock: Clock, settings: Settings
) -> None:
    from prefect import flow, get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from flows.ingest import ingest

    @flow(name="ingest-stripe-retry-test")
    def load(chosen: Settings) -> IngestResult:
        return ingest.with_options(retries=1, retry_delay_seconds=0).submit("stripe", chosen).result()

    def ingest_runs(flow_run_id: Any) -> list[Any]:
        this_run = FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(flow_run_filter=this_run)
            return [(run, client.read_task_run_states(run.id)) for run in runs]

    def assert_retried_once(state: Any) -> IngestResult:
        assert state.is_completed(), state
        (run, history), *others = ingest_runs(state.state_details.flow_run_id)
        assert not others
        assert run.name == "ingest-stripe"
        assert run.run_count == 2  # failed once, retried once
        names = [s.name for s in history]
        assert "Retrying" in names and names[-1] == "Completed", names
        return state.result()

    # 1) the first (full) read: after 3 pages of charges, an outage (dlt reads resources
    #    round-robin, so the failing request may be another list's; all are mid-paging)
    outage = outage_after(store, "charges", pages=3)
    result = assert_retried_once(load(settings, return_state=True))
    assert outage == [3]
    assert_exact(settings, store)
    assert {t: result.rows[t] for t in TABLES} == {t: store.count(t) for t in TABLES}

    # 2) an incremental read: the events feed fails after its first page
    events_before = len(store.events())
    expected = make_changes(store, clock)
    outage = outage_after(store, "events", pages=1)
    result = assert_retried_once(load(settings, return_state=True))
    assert outage == [1]
    # each changed object once, each new event once: nothing from the failed attempt
    assert result.rows == {**expected, "events": len(store.events()) - events_before}
    assert_exact(settings, store)


# ----------------------------------------------------------------------------- whole-flow layer


def run_fails_for_good(settings: Settings, store: StripeStore, endpoint: str, pages: int) -> None:
    outage = outage_after(store, endpoint, pages)
    with pytest.raises(ApiError, match="HTTP 503") as failed:
        run_source("stripe", settings)
    assert outage == [pages]
    assert is_transient(failed.value)  # the Prefect task would retry it; here nobody does
    store.on_page = None


@pytest.mark.usefixtures("prefect_harness")
def test_a_failure_of_the_worker_not_the_source_names_the_source(settings: Settings) -> None:
    """The worker's disk refuses dlt's folder (a file stands where it goes, as a full disk
    refuses a write): the run's report names the source, the disk's error stays chained."""
    settings.pipelines_dir.parent.mkdir(parents=True, exist_ok=True)
    settings.pipelines_dir.write_text("not a folder")
    with pytest.raises(EltRunFailed) as failed:
        ingest_source("stripe")
    assert failed.value.summary.error.startswith("ingest: source stripe: "), failed.value.summary.error
    ingest_error = failed.value.__cause__
    assert isinstance(ingest_error, IngestFailed) and isinstance(ingest_error.__cause__, OSError)
    assert not is_transient(ingest_error)


def test_fresh_run_after_a_failed_run_resumes_from_warehouse_state(
    store: StripeStore, clock: Clock, settings: Settings
) -> None:
    def run() -> IngestResult:
        return run_source("stripe", settings)

    # HTTP-layer faults the client absorbs, on every run (seeded, so replayable)
    store.fault_rate, store.fault_kinds, store.retry_after = 0.05, ("429", "500", "502", "truncate"), 0.01

    # 1) the first run dies in the middle of the full read of charges; nothing is committed
    run_fails_for_good(settings, store, "charges", pages=5)
    make_changes(store, clock)  # the source moves on meanwhile (updates, refunds, a deletion)
    new_worker(settings)
    result = run()
    assert {t: result.rows[t] for t in TABLES} == {t: store.count(t) for t in TABLES}
    assert_exact(settings, store)

    # 2) changes, then a run that dies reading the events feed, then a new worker
    events_before = len(store.events())
    expected = more_changes(store, clock)
    run_fails_for_good(settings, store, "events", pages=1)
    new_worker(settings)
    result = run()
    # exactly the new charges + the refunded one, the refund, the deleted customer
    assert result.rows == {**expected, "events": len(store.events()) - events_before}
    assert_exact(settings, store)
    assert query(
        settings.duckdb_path, "select count(*) from raw_stripe.customers where id = 'cus_000013'"
    ) == [(0,)]
    assert query(
        settings.duckdb_path, "select amount_refunded from raw_stripe.charges where id = 'ch_000042'"
    ) == [(77,)]

    # 3) and a further run (again on a new worker) has nothing to load
    new_worker(settings)
    clock.tick(60)
    result = run()
    assert result.total_rows == 0, result.rows
    assert_exact(settings, store)
    assert sum(store.faults_served.values()) > 0, "no HTTP-layer fault was injected"


@pytest.mark.usefixtures("prefect_harness")
def test_a_warehouse_locked_by_another_process_is_waited_out(settings: Settings, store: StripeStore) -> None:
    import subprocess
    import sys

    from prefect import flow, get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from flows.ingest import ingest

    @flow(name="ingest-stripe-locked-warehouse")
    def load(chosen: Settings) -> IngestResult:
        return ingest.with_options(retries=4, retry_delay_seconds=2).submit("stripe", chosen).result()

    # GIVEN another process holding DuckDB's write lock on the warehouse for a few seconds
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; con = duckdb.connect(sys.argv[1]); print('locked', flush=True);"
            " time.sleep(float(sys.argv[2]))",
            str(settings.duckdb_path),
            "5",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        # WHEN the load runs THEN it fails on the lock, is retried, and loads once the lock is gone
        state = load(settings, return_state=True)
    finally:
        holder.kill()
        holder.wait()
    assert state.is_completed(), state.message
    with get_client(sync_client=True) as client:
        this_run = FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
        [task_run] = client.read_task_runs(flow_run_filter=this_run)
    assert task_run.run_count >= 2  # it did meet the lock
    assert_exact(settings, store)


def test_warehouse_errors_that_pass_are_transient_and_others_are_not() -> None:
    import duckdb

    lock = duckdb.IOException('IO Error: Could not set lock on file "w.duckdb": Conflicting lock is held')
    assert not is_transient(RuntimeError("load failed"))
    wrapped = RuntimeError("pipeline step failed")
    wrapped.__cause__ = lock
    assert is_transient(wrapped)
    assert is_transient(RuntimeError("429 Too Many Requests: rate limit exceeded"))
    assert not is_transient(RuntimeError("250001: Incorrect username or password was specified."))


def test_a_warehouse_without_the_state_is_reloaded_whatever_the_local_folder_says(
    settings: Settings, store: StripeStore
) -> None:
    import duckdb

    # GIVEN a load, whose cursors dlt also keeps in its local folder
    run_source("stripe", settings)
    assert_exact(settings, store)
    # WHEN the warehouse is re-created empty, its schema made in advance (as an admin would)
    with duckdb.connect(str(settings.duckdb_path)) as con:
        for (table,) in con.execute(
            "select table_name from information_schema.tables where table_schema = 'raw_stripe'"
        ).fetchall():
            con.execute(f'drop table raw_stripe."{table}"')
    # THEN the next run trusts the warehouse, not the local cursors, and loads everything again
    result = run_source("stripe", settings)
    assert result.rows["charges"] == store.count("charges")
    assert_exact(settings, store)
