"""The demo's first run on each warehouse, made once per session and shared.

Why: the first run (load everything → gate → build → publish) is the slowest step of an
end-to-end module, and two modules need each one: the warehouse's own (which goes on to
the unchanged re-run, the source changes, the misconfigurations) and the cross-warehouse
agreement (tests/cloud/test_marts_agree.py, which compares the published marts). The same
data (``N_ORDERS``) and the same PII salt go into every warehouse, or no hashed value
could match. DuckDB's side is the developer-environment run (tests/e2e/test_dev_environment.py),
so the agreement also shows that a prefixed environment builds production's marts.

A first run keeps its stand-ins and its warehouse up until the session ends; its settings
(and dbt's target folder, its own) apply only inside ``FirstRun.settings_applied()``.

A pytest plugin (registered in ``tests/conftest.py``): ``snowflake_first_run``,
``bigquery_first_run``, ``duckdb_dev_first_run``, and ``bigquery_marts`` for the agreement,
which under two workers runs beside BigQuery's module, not after it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from flows.config import load_settings
from flows.elt import EltRunFailed, elt
from flows.redact import first_line
from flows.report import RunSummary
from standins import DemoSources, demo_sources
from tests.emulators.bigquery_server import BigQueryEmulator, bigquery_emulator
from tests.emulators.snowflake import FakeSnowflake, running_fakesnow
from tests.support import bigquery, snowflake
from tests.support.demo_tables import COUNTED_TABLES
from tests.support.fingerprints import mart_fingerprints
from tests.support.privacy import Person, seed_person
from tests.support.scheduling import BIGQUERY_FIRST_RUN, scope_of
from tests.support.workers import publish, shared_folder, wait_for, worker_count

N_ORDERS = 200
# the orders every first run loads: the demo's and the seeded person's (tests/support/privacy.py)
ORDERS_LOADED = N_ORDERS + len(Person().order_ids)
# the marts hash personal data with the salt: the same salt everywhere, or no hash would match
PII_SALT = "the-same-salt-in-every-warehouse"
# the developer environment whose run is DuckDB's side of the agreement
DEV_SETTINGS = {"ELT_ENV": "dev", "ELT_DEVELOPER": "CI"}
DEV_PREFIX = "dev_ci_"

Query = Callable[[str], list[tuple[Any, ...]]]
# how long the agreement waits for BigQuery's first run on the other worker
BIGQUERY_WAIT_S = 900


@dataclass
class FirstRun:
    """A warehouse after the demo's first run, and what it held right after."""

    sources: DemoSources
    settings: dict[str, str]
    workdir: Path
    summary: RunSummary
    # rows per counted table (tests/support/demo_tables.py); empty for a prefixed environment
    counts: dict[str, int] = field(default_factory=dict)
    # rows and checksum of every published mart
    marts: dict[str, tuple[int, str]] = field(default_factory=dict)

    @contextmanager
    def settings_applied(self) -> Iterator[None]:
        """This warehouse's settings for a module's tests; every variable is restored after,
        including those the flow exports while it runs (the dbt and Soda settings)."""
        with _only(self.settings):
            yield


@contextmanager
def _only(settings: dict[str, str]) -> Iterator[None]:
    """``settings`` applied, and no name another warehouse's run derived and exported
    (the environment prefix, the CDC slot); the whole environment is restored after."""
    saved = dict(os.environ)
    for derived in ("ELT_SCHEMA_PREFIX", "SOURCES__SHOP__SLOT_NAME"):
        os.environ.pop(derived, None)
    os.environ.update(settings)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextmanager
def first_run(
    workdir: Path,
    warehouse_settings: dict[str, str],
    query: Query | None,
    failure_details: Callable[[], str] = str,
) -> Iterator[FirstRun]:
    """Start the stand-ins, run the flow once, record counts and mart fingerprints;
    ``failure_details`` adds what explains a failed run (an emulator's log)."""
    with demo_sources(workdir / "state", n_orders=N_ORDERS, durable=False) as sources:
        seed_person(sources)  # the person the cloud modules forget (tests/support/privacy.py)
        settings = (
            sources.environment()
            | {
                "TRANSFORM__PII_SALT": PII_SALT,
                "DBT_TARGET_PATH": str(workdir / "dbt" / "target"),
                "DBT_LOG_PATH": str(workdir / "dbt" / "logs"),
            }
            | warehouse_settings
        )
        with _only(settings):
            try:
                summary = elt()
            except EltRunFailed as exc:
                warehouse = load_settings().warehouse.name
                pytest.fail(f"the first run on {warehouse} failed: {exc.summary.error}\n{failure_details()}")
            assert summary.ok, summary.error
            counts = (
                {table: query(f"select count(*) from {table}")[0][0] for table in COUNTED_TABLES}
                if query
                else {}
            )
            run = FirstRun(
                sources, settings, workdir, summary, counts, mart_fingerprints(load_settings(), workdir)
            )
        # the first run profiled every table on this warehouse; a module's later runs skip it:
        # on an emulator each profile query costs a third of a second
        run.settings = settings | {"ELT_PROFILES": "false"}
        yield run


def _workdir(session_dir: Path, name: str) -> Path:
    """Under the session's own folder: pytest prunes its numbered tmp folders under live servers."""
    return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=session_dir))


@dataclass
class SnowflakeFirstRun(FirstRun):
    server: FakeSnowflake | None = None
    key_pair: tuple[Path, Path] | None = None


@pytest.fixture(scope="session")
def snowflake_first_run(session_dir: Path, prefect_harness: None) -> Iterator[SnowflakeFirstRun]:
    """The first run on Snowflake's emulator, whose user logs in by password or key pair."""
    workdir = _workdir(session_dir, "snowflake-first-run")
    key_pair = snowflake.write_key_pair(workdir / "keys")
    with (
        running_fakesnow(
            workdir / "fakesnow", password=snowflake.PASSWORD, public_key_file=key_pair[1]
        ) as server,
        first_run(
            workdir, server.environment(), partial(snowflake.query, server), server.first_errors
        ) as run,
    ):
        yield SnowflakeFirstRun(**vars(run), server=server, key_pair=key_pair)


@dataclass
class BigQueryFirstRun(FirstRun):
    emulator: BigQueryEmulator | None = None


def _bigquery_marts_file(config: pytest.Config) -> Path:
    return shared_folder(config) / "bigquery-marts.json"


@pytest.fixture(scope="session")
def bigquery_first_run(
    session_dir: Path, prefect_harness: None, pytestconfig: pytest.Config
) -> Iterator[BigQueryFirstRun]:
    """The first run on BigQuery's emulator; its marts also go to the session's shared
    folder, for the agreement test on the other worker (``bigquery_marts``)."""
    workdir = _workdir(session_dir, "bigquery-first-run")
    marts_file = _bigquery_marts_file(pytestconfig)
    try:
        with (
            bigquery_emulator(workdir / "bigquery") as emulator,
            first_run(workdir, emulator.client_environment(), bigquery.query) as run,
        ):
            publish(marts_file, {"marts": run.marts})
            yield BigQueryFirstRun(**vars(run), emulator=emulator)
    except BaseException as exc:
        if not marts_file.exists():  # the waiting worker learns at once, not after its timeout
            outcome = "skipped" if isinstance(exc, pytest.skip.Exception) else "error"
            publish(marts_file, {outcome: f"BigQuery's first run: {first_line(exc)}"})
        raise


@pytest.fixture(scope="session")
def bigquery_marts(request: pytest.FixtureRequest) -> dict[str, tuple[int, str]]:
    """BigQuery's published marts after its first run: from this process when BigQuery's
    module runs here, else from the worker that runs it (tests/support/scheduling.py always
    puts the two first-run scopes on different workers)."""
    items = request.session.items
    if worker_count() < 2 or not any(scope_of(item.nodeid) == BIGQUERY_FIRST_RUN for item in items):
        return request.getfixturevalue("bigquery_first_run").marts
    found = wait_for(_bigquery_marts_file(request.config), BIGQUERY_WAIT_S, "BigQuery's first run")
    if "skipped" in found:
        pytest.skip(found["skipped"])
    if "error" in found:
        pytest.fail(found["error"])
    return {mart: (rows, checksum) for mart, (rows, checksum) in found["marts"].items()}


@pytest.fixture(scope="session")
def duckdb_dev_first_run(session_dir: Path, prefect_harness: None) -> Iterator[FirstRun]:
    """The first run of a developer's environment (``ELT_ENV=dev``) on a DuckDB file."""
    workdir = _workdir(session_dir, "duckdb-dev-first-run")
    settings = DEV_SETTINGS | {
        "ELT_WAREHOUSE": "duckdb",
        "ELT_DUCKDB_PATH": str(workdir / "warehouse.duckdb"),
    }
    with first_run(workdir, settings, query=None) as run:
        yield run
