"""The bad-input corpus: every malformed record, from every source kind, gets its documented outcome.

GIVEN a first run that loaded clean rows, WHEN a second run meets one malformed record per
case (next to valid ones, in the same batch) THEN with ``bad_records: quarantine`` (the
default) each bad record is in ``_rejected_records`` with source, table, field and reason,
the valid records of the batch are loaded, and the rows of the first run are unchanged;
with ``bad_records: fail`` the run fails naming source, table, row and field, loading
nothing. The policy is documented in RELIABILITY.md ("Bad input") and dlt_sources/README.md.

Real servers throughout: the Stripe and tickets stand-ins on 127.0.0.1 (serving the records'
bytes as given) and a real PostgreSQL (wal_level=logical) for the SQL and CDC sources.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dlt
import duckdb
import psycopg2
import pytest

from dlt_sources.common.rejects import (
    DUPLICATE_KEY,
    INVALID_UTF8,
    NULL_KEY,
    NUMBER_OUT_OF_RANGE,
    OVERSIZED_STRING,
    TIMESTAMP_OUT_OF_RANGE,
    RecordRejected,
)
from dlt_sources.errors import SourceError
from dlt_sources.postgres_cdc import after_load
from dlt_sources.rest import declared_sources
from dlt_sources.stripe import stripe_source
from flows.ingest import source_error_in
from standins.rest_api import T0, TicketStore, iso, serve_tickets, ticket
from standins.stripe_api import StripeStore, serve_stripe
from tests.support.cdc import SOURCE as CDC_SOURCE
from tests.support.cdc import CdcDatabase, cdc_test_source, create_database
from tests.support.postgres import ModuleDatabases

MAX_STRING = 1_000  # `max_string_bytes` in these tests, so an oversized value stays small
BIG = "x" * 5_000


@dataclass(frozen=True)
class Case:
    """One malformed record: where it is, what it holds, and the documented outcome."""

    name: str
    key: str | None  # record_key in _rejected_records (None: the record has no key)
    field: str
    reason: str | None  # None: the value is representable and loads unchanged


def rejected(db: Path, dataset: str) -> dict[str | None, dict[str, Any]]:
    """``_rejected_records`` by record key (records without a key: the last one; see ``keyless``)."""
    with duckdb.connect(str(db), read_only=True) as con:
        exists = con.execute(
            "select count(*) from information_schema.tables where table_schema = ? "
            "and table_name = '_rejected_records'",
            [dataset],
        ).fetchone()
        if not exists or not exists[0]:
            return {}
        rows = con.execute(
            "select source, table_name, field, reason, record_key, record, detail "
            f"from {dataset}._rejected_records"
        ).fetchall()
    names = ("source", "table_name", "field", "reason", "record_key", "record", "detail")
    return {row[4]: dict(zip(names, row, strict=True)) for row in rows}


def keyless(db: Path, dataset: str) -> list[tuple[Any, ...]]:
    """(field, reason) of the rejected records that have no key."""
    return query(db, f"select field, reason from {dataset}._rejected_records where record_key is null")


def query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql).fetchall()


def pipeline(folder: Path, name: str, dataset: str) -> dlt.Pipeline:
    return dlt.pipeline(
        pipeline_name=name,
        destination=dlt.destinations.duckdb(str(folder / f"{name}.duckdb")),
        dataset_name=dataset,
        pipelines_dir=str(folder / "pipelines"),
    )


def assert_case(rows: dict[str | None, dict[str, Any]], case: Case, source: str, table: str) -> None:
    if case.reason is None:
        assert case.key not in rows, f"{case.name}: a representable value was rejected"
        return
    row = rows.get(case.key)
    assert row is not None, f"{case.name}: not in _rejected_records ({sorted(map(str, rows))})"
    if case.key is None:
        row = {**row, "field": case.field}  # several keyless records share the key None: see keyless()
    assert (row["source"], row["table_name"], row["field"], row["reason"]) == (
        source,
        table,
        case.field,
        case.reason,
    )
    assert row["record"] is None or len(row["record"]) <= 2048


@pytest.fixture(scope="module", autouse=True)
def _isolated(module_dir: Path) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RUNTIME__DLTHUB_TELEMETRY", "false")
        patch.setenv("DLT_DATA_DIR", str(module_dir / "dlt_data"))
        patch.chdir(module_dir)
        yield


# --------------------------------------------------------------------------------------
# Declarative REST source (tickets stand-in): JSON records
# --------------------------------------------------------------------------------------
TOKEN = "bad-input-token"
REST_YAML = textwrap.dedent(
    """
    client:
      base_url: "{{ config.sources.helpdesk.base_url }}"
      auth: {type: bearer, token: "{{ secrets.sources.helpdesk.token }}"}
      paginator: {type: cursor, cursor_path: next_cursor, cursor_param: cursor}
    resources:
      - name: tickets
        primary_key: id
        write_disposition: merge
        endpoint:
          path: tickets
          params: {limit: 100}
          data_selector: data
          incremental: {start_param: updated_since, cursor_path: updated_at}
        columns:
          id: {data_type: bigint, nullable: false}
          requester: {data_type: json}
          tags: {data_type: json}
          created_at: {data_type: timestamp}
          updated_at: {data_type: timestamp, nullable: false}
    """
)
N_TICKETS = 4
LATER = iso(T0 + 86_400)


def _ticket_json(**fields: Any) -> bytes:
    """A ticket's JSON with ``fields`` replaced; a value of type bytes is spliced in raw."""
    body = {**ticket(0), "id": 100, "updated_at": LATER, **fields}
    raw = {k: v for k, v in body.items() if isinstance(v, bytes)}
    text = json.dumps({k: (f"@@{k}@@" if k in raw else v) for k, v in body.items() if v is not ...})
    encoded = text.encode()
    for k, v in raw.items():
        encoded = encoded.replace(f'"@@{k}@@"'.encode(), v)
    return encoded


REST_CASES = [
    # case, JSON fields of the record (... = left out), documented outcome
    (Case("missing id", None, "id", NULL_KEY), {"id": ..., "subject": "no id"}),
    (Case("null id", None, "id", NULL_KEY), {"id": None, "subject": "null id"}),
    (
        Case("lone surrogate", "id=102", "subject", INVALID_UTF8),
        {"id": 102, "subject": b'"bad \\ud800 text"'},
    ),
    (
        Case("invalid UTF-8 byte", "id=103", "subject", INVALID_UTF8),
        {"id": 103, "subject": b'"bad \xff byte"'},
    ),
    (
        Case("id beyond int64", "id=9223372036854775808", "id", NUMBER_OUT_OF_RANGE),
        {"id": b"9223372036854775808"},
    ),
    (
        Case("timestamp 'infinity'", "id=105", "created_at", TIMESTAMP_OUT_OF_RANGE),
        {"id": 105, "created_at": "infinity"},
    ),
    (
        Case("year 10000", "id=106", "created_at", TIMESTAMP_OUT_OF_RANGE),
        {"id": 106, "created_at": "+10000-01-01T00:00:00Z"},
    ),
    (Case("oversized string", "id=107", "description", OVERSIZED_STRING), {"id": 107, "description": BIG}),
    (
        Case("year 9999 loads", "id=108", "created_at", None),
        {"id": 108, "created_at": "9999-12-31T23:59:59Z"},
    ),
    (Case("year 1 loads", "id=109", "created_at", None), {"id": 109, "created_at": "0001-01-01T00:00:00Z"}),
    (
        Case("before 1970 loads", "id=110", "created_at", None),
        {"id": 110, "created_at": "1960-01-01T00:00:00Z"},
    ),
    # an update whose new version is bad: the warehouse keeps the old version of ticket 1
    (
        Case("bad update of a loaded row", "id=1", "created_at", TIMESTAMP_OUT_OF_RANGE),
        {"id": 1, "created_at": "infinity"},
    ),
]


@dataclass
class RestRun:
    db: Path
    first: list[tuple[Any, ...]]
    error: BaseException | None = None


def _rest_run(module_dir: Path, name: str, mode: str) -> RestRun:
    store = TicketStore(N_TICKETS)
    folder = module_dir / f"rest_{name}"
    folder.mkdir()
    (folder / "helpdesk.yml").write_text(REST_YAML)
    with pytest.MonkeyPatch.context() as patch, serve_tickets(store, TOKEN) as url:
        patch.setenv("ELT_REST_SOURCES_DIR", str(folder))
        patch.setenv("SOURCES__HELPDESK__BASE_URL", url)
        patch.setenv("SOURCES__HELPDESK__TOKEN", TOKEN)
        patch.setenv("SOURCES__HELPDESK__MAX_STRING_BYTES", str(MAX_STRING))
        patch.setenv("SOURCES__HELPDESK__BAD_RECORDS", mode)
        pipe = pipeline(module_dir, f"rest_{name}", "raw_helpdesk")
        pipe.run(
            declared_sources()["helpdesk"].factory(), loader_file_format="parquet"
        ).raise_on_failed_jobs()
        db = module_dir / f"rest_{name}.duckdb"
        first = query(db, "select id, subject, created_at from raw_helpdesk.tickets order by id")
        for index, (_, fields) in enumerate(REST_CASES):
            store.upsert_raw(LATER, 10_000 + index, _ticket_json(**fields))
        store.upsert_raw(LATER, 4242, _ticket_json(id=4242, subject="valid, same batch"))
        try:
            pipe.run(
                declared_sources()["helpdesk"].factory(), loader_file_format="parquet"
            ).raise_on_failed_jobs()
        except Exception as exc:  # the fail mode's outcome, asserted by its test
            return RestRun(db, first, exc)
    return RestRun(db, first)


@pytest.fixture(scope="module")
def rest_quarantine(module_dir: Path) -> RestRun:
    run = _rest_run(module_dir, "quarantine", "quarantine")
    assert run.error is None, str(run.error)
    return run


@pytest.mark.parametrize(("case", "fields"), REST_CASES, ids=[c.name for c, _ in REST_CASES])
def test_rest_record(rest_quarantine: RestRun, case: Case, fields: dict[str, Any]) -> None:
    assert_case(rejected(rest_quarantine.db, "raw_helpdesk"), case, "helpdesk", "tickets")
    if case.reason is None:
        wanted = int(case.key.removeprefix("id=")) if case.key else None
        assert query(
            rest_quarantine.db, f"select count(*) from raw_helpdesk.tickets where id = {wanted}"
        ) == [(1,)]


def test_rest_valid_records_load_and_earlier_rows_stay(rest_quarantine: RestRun) -> None:
    db = rest_quarantine.db
    assert query(db, "select subject from raw_helpdesk.tickets where id = 4242") == [("valid, same batch",)]
    before = query(
        db, f"select id, subject, created_at from raw_helpdesk.tickets where id <= {N_TICKETS} order by id"
    )
    assert before == rest_quarantine.first  # ticket 1's bad update did not touch it
    assert query(db, "select count(*) from raw_helpdesk.tickets where id is null") == [(0,)]
    assert keyless(db, "raw_helpdesk") == [("id", NULL_KEY)] * 2  # missing id, null id


def test_rest_fail_mode_names_source_table_row_and_field(module_dir: Path) -> None:
    run = _rest_run(module_dir, "fail", "fail")
    error = source_error_in(run.error) if run.error is not None else None
    assert isinstance(error, RecordRejected), run.error
    assert all(part in str(error) for part in ("source helpdesk", "table `tickets`", "field `"))
    assert query(run.db, "select id, subject, created_at from raw_helpdesk.tickets order by id") == run.first


# --------------------------------------------------------------------------------------
# Stripe source (Stripe stand-in): objects listed on the first sync, changes from events
# --------------------------------------------------------------------------------------
STRIPE_KEY = "sk_test_bad_input_4242"
C0 = 1_700_000_000


def _customer(i: int, **fields: Any) -> dict[str, Any]:
    return {
        "id": f"cus_{i:04d}",
        "object": "customer",
        "created": C0 + i,
        "email": f"c{i}@example.com",
        **fields,
    }


STRIPE_CASES = [
    # case, raw JSON of the listed object, documented outcome
    (
        Case("missing id", None, "id", NULL_KEY),
        b'{"object":"customer","created":1700000100,"email":"no-id@x"}',
    ),
    (Case("null id", None, "id", NULL_KEY), b'{"id":null,"object":"customer","created":1700000101}'),
    (
        Case("lone surrogate", "id=cus_bad1", "name", INVALID_UTF8),
        b'{"id":"cus_bad1","object":"customer","created":1700000102,"name":"\\udfff"}',
    ),
    (
        Case("balance beyond int64", "id=cus_bad2", "balance", NUMBER_OUT_OF_RANGE),
        b'{"id":"cus_bad2","object":"customer","created":1700000103,"balance":9223372036854775808}',
    ),
    (
        Case("created after year 9999", "id=cus_bad3", "created", TIMESTAMP_OUT_OF_RANGE),
        b'{"id":"cus_bad3","object":"customer","created":1000000000000000}',
    ),
    (
        Case("oversized string", "id=cus_bad4", "description", OVERSIZED_STRING),
        b'{"id":"cus_bad4","object":"customer","created":1700000104,"description":"' + BIG.encode() + b'"}',
    ),
    (
        Case("created in year 9999 loads", "id=cus_ok1", "created", None),
        b'{"id":"cus_ok1","object":"customer","created":253402300799}',
    ),
    (
        Case("created before 1970 loads", "id=cus_ok2", "created", None),
        b'{"id":"cus_ok2","object":"customer","created":-315619200}',
    ),
]


@pytest.fixture(scope="module")
def stripe_run(module_dir: Path) -> tuple[Path, list[tuple[Any, ...]]]:
    store = StripeStore(clock=lambda: C0 + 10 * 86_400)
    store.extend("customers", [_customer(i) for i in range(3)], history=True)
    for index, (_, raw) in enumerate(STRIPE_CASES):
        store.add_raw("customers", f"raw_{index}", C0 + 50 + index, raw)
    pipe = pipeline(module_dir, "stripe", "raw_stripe")
    with serve_stripe(store, STRIPE_KEY) as url:
        source = stripe_source(
            api_key=STRIPE_KEY, base_url=url, max_string_bytes=MAX_STRING, backoff_factor=0.01
        )
        pipe.run(source.with_resources("customers"), loader_file_format="parquet").raise_on_failed_jobs()
        db = module_dir / "stripe.duckdb"
        first = query(db, "select id, email, balance from raw_stripe.customers order by id")
        # a change whose new state is bad (from the events feed): the old row must stay
        store.update("customers", "cus_0001", balance=(1 << 63) + 5)
        store.update("customers", "cus_0002", email="changed@example.com")
        source = stripe_source(
            api_key=STRIPE_KEY, base_url=url, max_string_bytes=MAX_STRING, backoff_factor=0.01
        )
        pipe.run(source.with_resources("customers"), loader_file_format="parquet").raise_on_failed_jobs()
    return db, first


@pytest.mark.parametrize(("case", "raw"), STRIPE_CASES, ids=[c.name for c, _ in STRIPE_CASES])
def test_stripe_object(stripe_run: tuple[Path, list[tuple[Any, ...]]], case: Case, raw: bytes) -> None:
    db, _ = stripe_run
    assert_case(rejected(db, "raw_stripe"), case, "stripe", "customers")
    if case.reason is None:
        assert query(db, f"select count(*) from raw_stripe.customers where id = '{case.key[3:]}'") == [(1,)]


def test_stripe_valid_objects_load_and_a_bad_change_leaves_the_row(
    stripe_run: tuple[Path, list[tuple[Any, ...]]],
) -> None:
    db, first = stripe_run
    rows = dict((r[0], r[1:]) for r in query(db, "select id, email, balance from raw_stripe.customers"))
    assert rows["cus_0001"] == dict((r[0], r[1:]) for r in first)["cus_0001"]  # unchanged
    assert rows["cus_0002"][0] == "changed@example.com"  # the valid change of the same sync
    change = rejected(db, "raw_stripe")["id=cus_0001"]
    assert (change["field"], change["reason"]) == ("balance", NUMBER_OUT_OF_RANGE)


def test_stripe_event_without_id_fails_naming_it_and_keeps_what_was_loaded(module_dir: Path) -> None:
    """The events cursor cannot place an event without an id: the sync fails naming the
    source, the table, the event and the field; the rows and the cursor of the earlier sync
    stay as they were."""
    now = C0 + 10 * 86_400
    store = StripeStore(clock=lambda: now)
    store.extend("customers", [_customer(i) for i in range(3)], history=True)
    pipe = pipeline(module_dir, "stripe_events", "raw_stripe")
    db = module_dir / "stripe_events.duckdb"
    with serve_stripe(store, STRIPE_KEY) as url:

        def sync() -> None:
            source = stripe_source(api_key=STRIPE_KEY, base_url=url, backoff_factor=0.01)
            pipe.run(source.with_resources("customers"), loader_file_format="parquet").raise_on_failed_jobs()

        sync()
        loaded = query(db, "select * from raw_stripe.customers order by id")
        cursor = pipe.state["sources"]["stripe"]["resources"]["customers"]["events_cursor"]
        store.update("customers", "cus_0001", email="new@example.com")
        store.add_raw_event(
            "evt_no_id",
            now,
            "customer.updated",
            b'{"object":"event","type":"customer.updated","created":%d,"data":{"object":%s}}'
            % (now, json.dumps(_customer(2, email="lost@example.com")).encode()),
        )
        with pytest.raises(Exception) as failed:
            sync()
    error = source_error_in(failed.value)
    assert error is not None, failed.value
    message = str(error)
    assert message.startswith("stripe source: table `events`, event #"), message
    assert "field `id` is missing" in message and "customer.updated" in message
    assert query(db, "select * from raw_stripe.customers order by id") == loaded
    assert pipe.state["sources"]["stripe"]["resources"]["customers"]["events_cursor"] == cursor


# --------------------------------------------------------------------------------------
# PostgreSQL: the SQL database source (ADBC) and CDC (pgoutput), the session's server
# --------------------------------------------------------------------------------------
def _execute(dsn: str, *statements: str) -> None:
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)
    conn.close()


# the SQL corpus: a key configured in the YAML only (no constraint), values by column
SQL_CASES = [
    # case, INSERT values (id, label, amount, big, happened_at, day), documented outcome
    (
        Case("timestamptz 'infinity'", "id=10", "happened_at", TIMESTAMP_OUT_OF_RANGE),
        "10, 'a', 1, 1, 'infinity', '2026-01-01'",
    ),
    (
        Case("timestamptz '-infinity'", "id=11", "happened_at", TIMESTAMP_OUT_OF_RANGE),
        "11, 'a', 1, 1, '-infinity', '2026-01-01'",
    ),
    (Case("date 'infinity'", "id=12", "day", TIMESTAMP_OUT_OF_RANGE), "12, 'a', 1, 1, now(), 'infinity'"),
    (
        Case("a BC timestamp", "id=13", "happened_at", TIMESTAMP_OUT_OF_RANGE),
        "13, 'a', 1, 1, '0044-03-15 00:00+00 BC', now()",
    ),
    (
        Case("year 12000", "id=14", "happened_at", TIMESTAMP_OUT_OF_RANGE),
        "14, 'a', 1, 1, '12000-01-01 00:00+00', now()",
    ),
    (Case("numeric(12,2) NaN", "id=15", "amount", NUMBER_OUT_OF_RANGE), "15, 'a', 'NaN', 1, now(), now()"),
    (Case("bare numeric 1e40", "id=16", "big", NUMBER_OUT_OF_RANGE), "16, 'a', 1, 1e40, now(), now()"),
    (
        Case("oversized text", "id=17", "label", OVERSIZED_STRING),
        f"17, repeat('x', {MAX_STRING + 1}), 1, 1, now(), now()",
    ),
    (Case("NULL key", None, "id", NULL_KEY), "NULL, 'a', 1, 1, now(), now()"),
    (Case("year 9999 loads", "id=30", "happened_at", None), "30, 'a', 1, 1, '9999-12-31 23:59:59+00', now()"),
    (
        Case("year 1 loads", "id=31", "happened_at", None),
        "31, 'a', 1, 1, '0001-01-01 00:00+00', '0001-01-01'",
    ),
]
SQL_DDL = """
create table corpus (
    id bigint, label text, amount numeric(12, 2), big numeric, happened_at timestamptz, day date,
    updated_at timestamptz not null default clock_timestamp()
);
insert into corpus (id, label, amount, big, happened_at, day) values
    (1, 'one', 1.10, 1, '2026-01-01 00:00+00', '2026-01-01'),
    (2, 'two', 2.20, 2, '2026-01-02 00:00+00', '2026-01-02'),
    (3, 'three', 3.30, 3, '2026-01-03 00:00+00', '2026-01-03');
"""
SQL_YAML = """
credentials: "{{ secrets.sources.pgbad.credentials }}"
tables:
  - name: corpus
    primary_key: id
    cursor: updated_at
"""
SQL_COLUMNS = "id, label, amount, big, happened_at, day"


def _sql_run(
    module_dir: Path, postgres_databases: ModuleDatabases, name: str, mode: str
) -> tuple[Path, list[Any], BaseException | None]:
    from dlt_sources.sql_database import load_file, sql_database_source

    dsn = postgres_databases.create(name).dsn()
    _execute(dsn, SQL_DDL)
    folder = module_dir / name
    folder.mkdir()
    (folder / "pgbad.yml").write_text(SQL_YAML)
    pipe = pipeline(module_dir, name, "raw_pgbad")
    db = module_dir / f"{name}.duckdb"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SOURCES__PGBAD__CREDENTIALS", dsn)
        patch.setenv("SOURCES__PGBAD__MAX_STRING_BYTES", str(MAX_STRING))
        patch.setenv("SOURCES__PGBAD__BAD_RECORDS", mode)
        source = sql_database_source(load_file(folder / "pgbad.yml"))
        pipe.run(source, loader_file_format="parquet").raise_on_failed_jobs()
        first = query(db, f"select {SQL_COLUMNS} from raw_pgbad.corpus order by id")
        inserts = [f"insert into corpus ({SQL_COLUMNS}) values ({values})" for _, values in SQL_CASES]
        _execute(
            dsn,
            *inserts,
            "insert into corpus (id, label) values (20, 'dup a'), (20, 'dup b'), (4, 'valid, same batch')",
            "update corpus set happened_at = 'infinity', updated_at = clock_timestamp() where id = 2",
        )
        try:
            pipe.run(
                sql_database_source(load_file(folder / "pgbad.yml")), loader_file_format="parquet"
            ).raise_on_failed_jobs()
        except Exception as exc:
            return db, first, exc
    return db, first, None


@pytest.fixture(scope="module")
def sql_run(module_dir: Path, postgres_databases: ModuleDatabases) -> tuple[Path, list[Any]]:
    db, first, error = _sql_run(module_dir, postgres_databases, "sql_quarantine", "quarantine")
    assert error is None, str(error)
    return db, first


@pytest.mark.parametrize(("case", "values"), SQL_CASES, ids=[c.name for c, _ in SQL_CASES])
def test_sql_row(sql_run: tuple[Path, list[Any]], case: Case, values: str) -> None:
    db, _ = sql_run
    assert_case(rejected(db, "raw_pgbad"), case, "pgbad", "corpus")
    if case.reason is None:
        assert query(db, f"select count(*) from raw_pgbad.corpus where {case.key}") == [(1,)]


def test_sql_valid_rows_load_earlier_rows_stay_and_a_repeated_key_is_reported(
    sql_run: tuple[Path, list[Any]],
) -> None:
    db, first = sql_run
    assert query(db, "select label from raw_pgbad.corpus where id = 4") == [("valid, same batch",)]
    assert query(db, f"select {SQL_COLUMNS} from raw_pgbad.corpus where id <= 3 order by id") == first
    assert query(db, "select count(*) from raw_pgbad.corpus where id = 20") == [(1,)]  # merged to one row
    assert query(db, "select count(*) from raw_pgbad.corpus where id is null") == [(0,)]
    rows = rejected(db, "raw_pgbad")
    assert (rows["id=20"]["reason"], rows["id=20"]["field"]) == (DUPLICATE_KEY, "id")
    assert (rows["id=2"]["reason"], rows["id=2"]["field"]) == (TIMESTAMP_OUT_OF_RANGE, "happened_at")
    assert "infinity" in rows["id=10"]["detail"]


def test_sql_fail_mode_names_source_table_row_and_field(
    module_dir: Path, postgres_databases: ModuleDatabases
) -> None:
    db, first, error = _sql_run(module_dir, postgres_databases, "sql_fail", "fail")
    cause = source_error_in(error) if error is not None else None
    assert isinstance(cause, SourceError), error
    assert all(part in str(cause) for part in ("pgbad", "`corpus`", "id=")), str(cause)
    assert query(db, f"select {SQL_COLUMNS} from raw_pgbad.corpus order by id") == first


# CDC: the snapshot and the change stream of a table with a real primary key
CDC_CASES = [
    # case, INSERT values (id, label, amount, big, happened_at, day), documented outcome
    (
        Case("timestamptz 'infinity'", "id=10", "happened_at", TIMESTAMP_OUT_OF_RANGE),
        "10, 'a', 1, 1, 'infinity', '2026-01-01'",
    ),
    (Case("date '-infinity'", "id=11", "day", TIMESTAMP_OUT_OF_RANGE), "11, 'a', 1, 1, now(), '-infinity'"),
    (
        Case("a BC timestamp", "id=12", "happened_at", TIMESTAMP_OUT_OF_RANGE),
        "12, 'a', 1, 1, '0044-03-15 00:00+00 BC', now()",
    ),
    (
        Case("year 294276", "id=13", "happened_at", TIMESTAMP_OUT_OF_RANGE),
        "13, 'a', 1, 1, '294276-12-31 23:59:59+00', now()",
    ),
    (Case("numeric(12,2) NaN", "id=14", "amount", NUMBER_OUT_OF_RANGE), "14, 'a', 'NaN', 1, now(), now()"),
    (
        Case("oversized text", "id=15", "label", OVERSIZED_STRING),
        f"15, repeat('x', {MAX_STRING + 1}), 1, 1, now(), now()",
    ),
    (Case("text 'N/A' is text", "id=16", "label", None), "16, 'N/A', 1, 1, now(), now()"),
    (Case("bare numeric 1e40 stays text", "id=17", "big", None), "17, 'a', 1, 1e40, now(), now()"),
    (Case("year 9999 loads", "id=18", "happened_at", None), "18, 'a', 1, 1, '9999-12-31 23:59:59+00', now()"),
]
CDC_DDL = """
create table corpus (
    id bigint primary key, label text, amount numeric(12, 2), big numeric, happened_at timestamptz, day date
);
insert into corpus values
    (1, 'one', 1.10, 1, '2026-01-01 00:00+00', '2026-01-01'),
    (2, 'two', 2.20, 2, '2026-01-02 00:00+00', '2026-01-02'),
    (3, 'three', 3.30, 3, '2026-01-03 00:00+00', '2026-01-03');
"""


@dataclass
class CdcRun:
    db: Path
    database: CdcDatabase
    pipe: dlt.Pipeline
    first: list[Any]


def _cdc(pipe: dlt.Pipeline) -> None:
    pipe.run(cdc_test_source(["corpus"]), loader_file_format="parquet").raise_on_failed_jobs()
    after_load(pipe, CDC_SOURCE)


@pytest.fixture(scope="module")
def cdc_run(module_dir: Path, postgres_databases: ModuleDatabases) -> Iterator[CdcRun]:
    name = postgres_databases.name("cdc")
    database = create_database(postgres_databases.server, name, CDC_DDL, ["corpus"])
    # the snapshot meets one bad row of its own
    database.execute("insert into corpus values (9, 'snap', 1, 1, 'infinity', now())")
    with pytest.MonkeyPatch.context() as patch:
        for key, value in database.environment(MAX_STRING_BYTES=str(MAX_STRING)).items():
            patch.setenv(key, value)
        pipe = pipeline(module_dir, "cdc", "raw_cdc_test")
        _cdc(pipe)
        db = module_dir / "cdc.duckdb"
        first = query(db, f"select {SQL_COLUMNS} from raw_cdc_test.corpus order by id")
        database.execute(
            *[f"insert into corpus values ({values})" for _, values in CDC_CASES],
            "insert into corpus values (4, 'valid, same batch', 4, 4, now(), now())",
            "update corpus set happened_at = 'infinity' where id = 2",  # a bad new image of a loaded row
            "delete from corpus where id = 3",
        )
        _cdc(pipe)
        yield CdcRun(db, database, pipe, first)


@pytest.mark.parametrize(("case", "values"), CDC_CASES, ids=[c.name for c, _ in CDC_CASES])
def test_cdc_change(cdc_run: CdcRun, case: Case, values: str) -> None:
    assert_case(rejected(cdc_run.db, "raw_cdc_test"), case, CDC_SOURCE, "corpus")
    if case.reason is None:
        assert query(cdc_run.db, f"select count(*) from raw_cdc_test.corpus where {case.key}") == [(1,)]


def test_cdc_snapshot_quarantines_its_bad_rows(cdc_run: CdcRun) -> None:
    row = rejected(cdc_run.db, "raw_cdc_test")["id=9"]
    assert (row["field"], row["reason"]) == ("happened_at", TIMESTAMP_OUT_OF_RANGE)
    assert 9 not in [r[0] for r in cdc_run.first]


def test_cdc_keeps_the_last_good_image_and_moves_on(cdc_run: CdcRun) -> None:
    db = cdc_run.db
    assert query(db, "select label from raw_cdc_test.corpus where id = 4") == [("valid, same batch",)]
    two = [row for row in cdc_run.first if row[0] == 2]
    assert query(db, f"select {SQL_COLUMNS} from raw_cdc_test.corpus where id = 2") == two  # old image kept
    assert query(db, "select count(*) from raw_cdc_test.corpus where id = 3") == [(0,)]  # the delete applied
    assert rejected(db, "raw_cdc_test")["id=2"]["reason"] == TIMESTAMP_OUT_OF_RANGE
    # exactly once: the LSN moved past the bad change, a later good change of the row applies
    count = query(db, "select count(*) from raw_cdc_test._rejected_records")
    cdc_run.database.execute("update corpus set happened_at = '2026-02-02 00:00+00' where id = 2")
    with pytest.MonkeyPatch.context() as patch:
        for key, value in cdc_run.database.environment(MAX_STRING_BYTES=str(MAX_STRING)).items():
            patch.setenv(key, value)
        _cdc(cdc_run.pipe)
    assert query(db, "select count(*) from raw_cdc_test._rejected_records") == count
    assert query(db, "select extract(month from happened_at) from raw_cdc_test.corpus where id = 2") == [(2,)]
