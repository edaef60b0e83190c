"""The reliability campaign: kill, break and overload real runs, then prove nothing was lost.

Everything is real: PostgreSQL (shop through CDC, inventory through the SQL source), the
Stripe and GitHub stand-ins on 127.0.0.1 serving random 429/5xx/timeout/truncated
answers, a Prefect API server, DuckDB, dbt and Soda. Each run is a child process
(tests/reliability/worker.py, forked by tests/reliability/zygote.py) so it can be
SIGKILLed; after every round the warehouse is compared with the sources row by row
(tests/reliability/truth.py).

Rounds:
- kills: the sources change, a run is killed at a random moment of a stage (extract,
  normalize, load: an ingest-only run; dbt, contracts, publish: the full ``elt`` run),
  sometimes the worker's disk is wiped too; the re-run must pass and match;
- faults: PostgreSQL restarted mid-snapshot and mid-stream, the DuckDB file locked by
  another process, a full temporary directory; the run may fail (then the next one must
  recover) but never lose or duplicate a row;
- continuous: consecutive ingest runs while a writer keeps changing every source.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from flows.config import PROJECT_DIR, TELEMETRY_OFF
from flows.config import environment as set_environment
from standins import DemoSources, demo_sources
from standins.postgres import restart
from tests.reliability.faults import can_mount_tmpfs, full_directory, hold_duckdb_lock
from tests.reliability.truth import (
    SHOP_TABLES,
    Comparison,
    Warehouse,
    github_tables,
    marts,
    postgres_tables,
    stripe_tables,
)
from tests.reliability.worker import STAGES
from tests.reliability.workload import (
    CAMPAIGN_SOURCES,
    INVENTORY_DATABASE,
    INVENTORY_TABLE,
    ContinuousWriter,
    Workload,
    create_inventory,
)
from tests.reliability.zygote import Zygote

INGEST_STAGES = ("extract", "normalize", "load")
RUN_TIMEOUT_S = 900


@dataclass(frozen=True)
class Plan:
    """How hard to push: ``make reliability`` runs the full plan, ``make test`` a light one."""

    # kills in each ingest stage (an ingest-only run, ~20 s a round) and in each of dbt,
    # contracts and publish (the full run and its re-run, ~2 min a round)
    ingest_kills_per_stage: int = 14
    transform_kills_per_stage: int = 4
    postgres_restarts: int = 3  # each mid-snapshot and mid-stream
    duckdb_locks: int = 4
    full_tmp_dirs: int = 3
    continuous_runs: int = 20
    http_fault_rate: float = 0.12
    orders: int = 2_000
    fresh_worker_share: float = 0.3
    seed: int = 1


# `make test`'s campaign: ingest-only (no dbt), one of each event, a few minutes
LIGHT = Plan(
    ingest_kills_per_stage=1,
    transform_kills_per_stage=0,
    postgres_restarts=1,
    duckdb_locks=1,
    full_tmp_dirs=1,
    continuous_runs=3,
)


@dataclass
class Run:
    """One child run: the stages it reached and how it ended."""

    marks: list[tuple[str, float]]
    returncode: int
    killed_in: str | None
    tail: str

    @property
    def passed(self) -> bool:
        return self.returncode == 0 and self.killed_in is None

    @property
    def outcome(self) -> str:
        return "passed" if self.passed else f"failed: {self.failure}"

    @property
    def failure(self) -> str:
        """The worker's one-line verdict, else the end of what it printed."""
        lines = self.tail.splitlines()
        return next((line for line in reversed(lines) if line.startswith("FAILED ")), "\n".join(lines[-5:]))


@dataclass
class Tally:
    injected: Counter[str] = field(default_factory=Counter)
    continuous_runs: int = 0
    runs: int = 0
    comparisons: list[Comparison] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def rows_compared(self) -> int:
        return sum(c.compared for c in self.comparisons)

    def total(self, attribute: str) -> int:
        return sum(getattr(c, attribute) for c in self.comparisons)

    @property
    def ok(self) -> bool:
        return not self.problems and all(c.ok for c in self.comparisons)

    def table(self) -> str:
        lines = ["| injected event | count |", "|---|---:|"]
        lines += [f"| {kind} | {count} |" for kind, count in sorted(self.injected.items())]
        kills = sum(n for kind, n in self.injected.items() if kind.startswith("SIGKILL"))
        faults = sum(self.injected.values()) - kills
        lines += [
            f"| **kills** | **{kills}** |",
            f"| **faults** | **{faults}** |",
            "",
            "| runs | under continuous writes | rows compared | rows lost | rows duplicated | rows wrong |",
            "|---:|---:|---:|---:|---:|---:|",
            f"| {self.runs} | {self.continuous_runs} | {self.rows_compared:,} | {self.total('lost')}"
            f" | {self.total('duplicated')} | {self.total('wrong')} |",
        ]
        lines += [f"\nproblem: {problem}" for problem in self.problems]
        return "\n".join(lines)


def _kill(pid: int) -> bool:
    """SIGKILL a run's process group; False when the run had already ended (the zygote
    reaps a run as soon as it exits, so unlike a Popen child it leaves no zombie behind)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True


def log(message: str) -> None:
    print(f"[reliability {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Campaign:
    def __init__(
        self, plan: Plan, workdir: Path, sources: DemoSources, environment: dict[str, str], zygote: Zygote
    ) -> None:
        self.plan = plan
        self.zygote = zygote
        self.workdir = workdir
        self.sources = sources
        self.environment = environment
        self.rng = random.Random(plan.seed)
        self.workload = Workload(sources, plan.seed)
        self.warehouse = Warehouse(Path(environment["ELT_DUCKDB_PATH"]))
        self.tally = Tally()
        self.stage_seconds: dict[str, float] = {}

    # ------------------------------------------------------------------ runs
    def run(
        self,
        mode: str,
        sources: list[str] = CAMPAIGN_SOURCES,
        kill: tuple[str, int, float] | None = None,
        extra_env: dict[str, str] | None = None,
        on_mark: tuple[str, float, Callable[[], None]] | None = None,
    ) -> Run:
        """A child run of ``mode`` (full | ingest); ``kill=(stage, nth, delay)`` SIGKILLs it
        ``delay`` s after the ``nth`` start of ``stage``; ``on_mark=(stage, delay, inject)``
        calls ``inject()`` at the first such moment instead (a fault; the run goes on)."""
        self.tally.runs += 1
        pid = self.zygote.start(mode, sources, extra_env or {}, self.workdir / "runs.log")
        source_pipelines = {f"elt_{source}" for source in sources}
        marks: list[tuple[str, float]] = []
        tail: list[str] = []
        killed_in = None
        timer = threading.Timer(RUN_TIMEOUT_S, _kill, (pid,))
        timer.start()
        started = time.monotonic()
        for raw in self.zygote.lines():
            line = raw.rstrip()
            tail = [*tail[-20:], line]
            if not line.startswith("MARK "):
                continue
            _, stage, *detail = line.split()
            if detail and detail[0] not in source_pipelines:
                continue  # a dlt step of the audit or restricted pipelines, not of a source
            marks.append((stage, time.monotonic() - started))
            seen = sum(1 for name, _ in marks if name == stage)
            if kill and kill[0] == stage and seen == kill[1]:
                time.sleep(kill[2])
                killed_in = stage if _kill(pid) else None  # None: the run ended first
                break
            if on_mark and on_mark[0] == stage and seen == 1:
                time.sleep(on_mark[1])
                on_mark[2]()
        returncode = self.zygote.wait()
        timer.cancel()
        return Run(marks, returncode, killed_in, "\n".join(tail))

    def must_pass(self, mode: str, why: str, **kwargs: object) -> Run:
        run = self.run(mode, **kwargs)  # type: ignore[arg-type]
        if not run.passed:
            self.tally.problems.append(f"{why}: the run failed: {run.failure}")
            log(f"FAILED {why}: {run.failure}")
        return run

    # ----------------------------------------------------------- comparisons
    def compare(self, with_marts: bool) -> None:
        inventory = self.sources.postgres.dsn(INVENTORY_DATABASE)
        results = [
            *postgres_tables(self.warehouse, self.sources.shop_admin_dsn, "raw_shop", SHOP_TABLES),
            *postgres_tables(self.warehouse, inventory, "raw_inventory", [INVENTORY_TABLE]),
            *stripe_tables(self.warehouse, self.sources),
            *github_tables(self.warehouse, self.sources),
        ]
        if with_marts:
            results += marts(self.warehouse, self.sources.shop_admin_dsn)
        self.tally.comparisons += results
        for result in results:
            if not result.ok:
                self.tally.problems.append(result.describe())
                log(f"MISMATCH {result.describe()}")

    def wipe_worker_disk(self) -> None:
        """A fresh worker: dlt's local folders gone (the warehouse holds the state)."""
        shutil.rmtree(Path(self.environment["ELT_DATA_DIR"]) / "dlt", ignore_errors=True)

    # ---------------------------------------------------------------- rounds
    def baseline(self) -> None:
        """The first full run (every source's initial load); its stage times size the kill delays."""
        everything = [*CAMPAIGN_SOURCES, "example_tickets"]
        run = self.must_pass(self.widest_mode, "the first run", sources=everything)
        for (stage, at), (_, after) in zip(run.marks, run.marks[1:], strict=False):
            self.stage_seconds[stage] = max(self.stage_seconds.get(stage, 0.0), after - at)
        log(f"first run passed; longest stage times {self.stage_seconds}")
        self.compare(with_marts=self.widest_mode == "full")

    @property
    def widest_mode(self) -> str:
        """The full run when the plan kills transform stages, else ingest-only runs throughout."""
        return "full" if self.plan.transform_kills_per_stage else "ingest"

    def kill_round(self, stage: str) -> None:
        self.workload.step()
        mode = "ingest" if stage in INGEST_STAGES else "full"
        nth = self.rng.randint(1, len(CAMPAIGN_SOURCES)) if mode == "ingest" else 1
        if stage == "contracts":
            nth = self.rng.randint(1, 2)  # raw or mart contracts
        delay = self.rng.uniform(0, self.stage_seconds.get(stage, 1.0))
        run = self.run(mode, kill=(stage, nth, delay))
        if run.killed_in is None:
            log(f"kill in {stage} #{nth} missed (run ended first: {run.returncode}); not counted")
        else:
            self.tally.injected[f"SIGKILL in {stage}"] += 1
        fresh = self.rng.random() < self.plan.fresh_worker_share
        if fresh:
            self.wipe_worker_disk()
            self.tally.injected["worker disk lost after a kill"] += 1
        self.must_pass(mode, f"re-run after a kill in {stage}")
        self.compare(with_marts=mode == "full")
        log(f"kill in {stage} #{nth} after {delay:.2f}s{' + fresh worker' if fresh else ''}: compared")

    def postgres_restart_round(self, during: str) -> None:
        """Restart PostgreSQL while the shop's CDC run reads its snapshot or its change stream."""
        self.workload.step()
        extra = {}
        if during == "snapshot":
            extra = {"SOURCES__SHOP__RESNAPSHOT": "true"}
        else:  # a long stream: every order item changes
            self.workload.touch_all_order_items()
        delay = self.rng.uniform(0, 0.1 if during == "snapshot" else 0.3)
        run = self.run(
            "ingest",
            sources=["shop"],
            extra_env=extra,
            on_mark=("extract", delay, lambda: restart(self.sources.postgres)),
        )
        self.tally.injected[f"PostgreSQL restarted mid-{during}"] += 1
        log(f"PostgreSQL restart {delay:.2f}s into the {during} run's extract: the run {run.outcome}")
        # as an operator would: a failed re-snapshot is run again, a passed one is done
        self.must_pass(
            "ingest", f"run after a PostgreSQL restart mid-{during}", extra_env={} if run.passed else extra
        )
        self.compare(with_marts=False)

    def duckdb_lock_round(self) -> None:
        """Another process holds the warehouse file while the run loads: retries wait it out."""
        self.workload.step()
        holders: list[subprocess.Popen[str]] = []
        self.must_pass(
            "ingest",
            "run with the DuckDB file locked",
            on_mark=("extract", 0.0, lambda: holders.append(hold_duckdb_lock(self.warehouse.path, 3.0))),
        )
        for holder in holders:
            holder.wait(30)
        self.tally.injected["DuckDB file locked by another process"] += 1
        self.compare(with_marts=False)

    def full_tmp_round(self, full: Path) -> None:
        """dlt's working folders and every temporary file on a full disk: the run fails cleanly,
        the next one (space back) loads everything."""
        self.workload.step()
        with full_directory(full) as path:
            run = self.run("ingest", extra_env={"ELT_DATA_DIR": str(path), "TMPDIR": str(path)})
        self.tally.injected["temporary directory full"] += 1
        log(f"full temporary directory: the run {run.outcome}")
        self.must_pass("ingest", "run after the temporary directory was full")
        self.compare(with_marts=False)

    def continuous_round(self) -> None:
        """Consecutive ingest runs while every source keeps changing; then quiet, one more
        run, and the warehouse must equal the sources."""
        with ContinuousWriter(self.workload):
            for n in range(self.plan.continuous_runs):
                self.must_pass("ingest", f"incremental run {n + 1} under continuous writes")
        self.tally.continuous_runs += self.plan.continuous_runs
        self.must_pass(self.widest_mode, "the run after the writes stopped")
        self.compare(with_marts=self.widest_mode == "full")

    def http_faults(self) -> None:
        stripe = sum(self.sources.stripe.faults_served.values())
        github = sum(self.sources.github.faults_served.values())
        for kind, count in self.sources.stripe.faults_served.items():
            self.tally.injected[f"HTTP {kind} (Stripe)"] += count
        for kind, count in self.sources.github.faults_served.items():
            self.tally.injected[f"HTTP {kind} (GitHub)"] += count
        log(f"HTTP faults served: Stripe {stripe}, GitHub {github}")

    def play(self) -> Tally:
        self.baseline()
        stages = [
            stage
            for stage in STAGES
            for _ in range(
                self.plan.ingest_kills_per_stage
                if stage in INGEST_STAGES
                else self.plan.transform_kills_per_stage
            )
        ]
        self.rng.shuffle(stages)
        for n, stage in enumerate(stages, 1):
            log(f"kill {n}/{len(stages)}")
            self.kill_round(stage)
        for _ in range(self.plan.postgres_restarts):
            self.postgres_restart_round("snapshot")
            self.postgres_restart_round("stream")
        for _ in range(self.plan.duckdb_locks):
            self.duckdb_lock_round()
        reason = can_mount_tmpfs()
        if reason:
            log(f"full temporary directory: SKIPPED, {reason}")
        for _ in range(self.plan.full_tmp_dirs if reason is None else 0):
            self.full_tmp_round(self.workdir / "full-tmp")
        self.continuous_round()
        self.http_faults()
        return self.tally


@contextmanager
def campaign_sources(plan: Plan, workdir: Path) -> Iterator[tuple[DemoSources, dict[str, str]]]:
    """The stand-ins with random HTTP faults, the inventory database, a Prefect API server,
    and the settings every child run gets."""
    from prefect.settings import PREFECT_API_URL

    from tests.support.prefect_database import prefect_test_server

    with ExitStack() as stack:
        demo = stack.enter_context(demo_sources(workdir / "sources", n_orders=plan.orders, durable=False))
        for store in (demo.stripe, demo.github):
            store.fault_rate = plan.http_fault_rate
        demo.stripe.timeout_sleep = demo.github.timeout_delay = 2.0  # past the clients' 1 s timeout
        stack.enter_context(set_environment(TELEMETRY_OFF))
        stack.enter_context(prefect_test_server())
        environment = (
            TELEMETRY_OFF
            | demo.environment()
            | create_inventory(demo, workdir)
            | {
                "PREFECT_API_URL": str(PREFECT_API_URL.value()),
                "PREFECT_HOME": str(workdir / "prefect"),
                "ELT_DATA_DIR": str(workdir / "data"),
                "ELT_DUCKDB_PATH": str(workdir / "warehouse.duckdb"),
                "ELT_RETRY_DELAY_SECONDS": "0.5",
                # the harness's server runs no repossessor: a killed build's lock is freed by
                # the next run once the holder's heartbeat stood still this long
                "ELT_BUILD_LOCK_STALE_SECONDS": "5",
                "ELT_INGEST_RETRIES": "5",
                "SOURCES__STRIPE__REQUEST_TIMEOUT": "1",
                "SOURCES__GITHUB__REQUEST_TIMEOUT": "1",
            }
        )
        yield demo, environment


def play(plan: Plan, workdir: Path) -> Tally:
    workdir.mkdir(parents=True, exist_ok=True)
    with campaign_sources(plan, workdir) as (sources, environment):
        zygote = Zygote(os.environ | environment, PROJECT_DIR)
        try:
            return Campaign(plan, workdir, sources, environment, zygote).play()
        finally:
            zygote.stop()
