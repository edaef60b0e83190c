"""How ``make test``'s two xdist workers share the suite.

- Whole modules, so a module's tests run in order and its module fixtures (servers,
  stand-ins) start once.
- The modules sharing one of the session's first runs (tests/support/first_runs.py) go to
  one worker together, so each first run is made once: BigQuery's module on its own, the
  Snowflake and developer-environment modules with the cross-warehouse agreement, which
  reads BigQuery's marts from the other worker (``first_runs.bigquery_marts``).
- The longest scopes start first (longest processing time first), so the worker that
  finishes early is never left idle while the other starts a long module.

A scheduler of our own because pytest-xdist 3.8's ``--dist loadgroup`` does nothing under
pytest 9 (it renames ``item._nodeid``, which pytest 9 no longer reads, so every test
stays its own group) and ``--dist loadfile`` would make a first run once per worker.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Final

import pytest
from xdist.scheduler import LoadScopeScheduling

BIGQUERY_FIRST_RUN: Final[str] = "bigquery first run"
SNOWFLAKE_AND_DUCKDB_FIRST_RUNS: Final[str] = "snowflake and duckdb first runs"

# each first run's modules, in the order they run; tests/conftest.py refuses a module
# that uses a first run outside its scope
FIRST_RUN_SCOPES: Final[dict[str, tuple[str, ...]]] = {
    BIGQUERY_FIRST_RUN: ("tests/cloud/test_bigquery_flow.py",),
    SNOWFLAKE_AND_DUCKDB_FIRST_RUNS: (
        "tests/cloud/test_snowflake_flow.py",
        "tests/e2e/test_dev_environment.py",
        # last: by then BigQuery's first run, on the other worker, is long done
        "tests/cloud/test_marts_agree.py",
    ),
}
SCOPE_OF_FIRST_RUN: Final[dict[str, str]] = {
    "bigquery_first_run": BIGQUERY_FIRST_RUN,
    "snowflake_first_run": SNOWFLAKE_AND_DUCKDB_FIRST_RUNS,
    "duckdb_dev_first_run": SNOWFLAKE_AND_DUCKDB_FIRST_RUNS,
}

# The scopes that take longest on the 2-core machine (seconds under two workers, measured
# 2026-12-08), started first in this order; every other scope follows in collection order.
# A new module that takes more than ~30 s belongs here.
LONGEST_FIRST: Final[tuple[str, ...]] = (
    "tests/e2e/test_elt_flow.py",  # ~335, the privacy scenarios among them
    BIGQUERY_FIRST_RUN,  # ~215
    SNOWFLAKE_AND_DUCKDB_FIRST_RUNS,  # ~200
    "tests/integration/test_deployments.py",  # ~180, a quarter of it waiting out build windows
    "tests/integration/test_alerts.py",  # ~55
    "tests/e2e/test_first_source.py",  # ~45
    "tests/integration/test_backfill.py",  # ~45
    "tests/integration/test_dbt_project.py",  # ~35
    "tests/integration/test_cdc_crash.py",  # ~30
    "tests/integration/test_github_source.py",  # ~20
)

_MODULE_SCOPE: Final[dict[str, str]] = {
    module: scope for scope, modules in FIRST_RUN_SCOPES.items() for module in modules
}


def module_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def scope_of(nodeid: str) -> str:
    module = module_of(nodeid)
    return _MODULE_SCOPE.get(module, module)


def _run_rank(nodeid: str) -> int:
    """A module's place in its first-run scope (0 for every other module)."""
    module = module_of(nodeid)
    scope = _MODULE_SCOPE.get(module)
    return FIRST_RUN_SCOPES[scope].index(module) if scope else 0


def longest_first(workqueue: OrderedDict[str, dict[str, bool]]) -> None:
    """Put the scopes of LONGEST_FIRST at the head of xdist's queue, in that order, and each
    first run's modules in the order of FIRST_RUN_SCOPES (a unit's node ids run in order)."""
    for scope in reversed(LONGEST_FIRST):
        if scope in workqueue:
            workqueue.move_to_end(scope, last=False)
    for scope, unit in workqueue.items():
        if scope in FIRST_RUN_SCOPES:
            ordered = sorted(unit.items(), key=lambda entry: _run_rank(entry[0]))
            unit.clear()
            unit.update(ordered)


class ModuleScheduling(LoadScopeScheduling):
    """xdist's scope scheduling with a module, or a first run's modules, as the scope; the
    longest scopes first."""

    def __init__(self, config: pytest.Config, log: Any = None) -> None:
        super().__init__(config, log)
        self._ordered = False

    def _split_scope(self, nodeid: str) -> str:
        return scope_of(nodeid)

    def _assign_work_unit(self, node: Any) -> None:
        if not self._ordered:  # the queue is complete from the first assignment on
            self._ordered = True
            longest_first(self.workqueue)
        super()._assign_work_unit(node)


def check_first_run_modules(items: list[pytest.Item]) -> None:
    """A module that uses a first run outside that run's scope would make it again on the
    other worker: stop the session saying which."""
    strays = sorted(
        {
            f"{module_of(item.nodeid)} (uses {name})"
            for item in items
            for name in item.fixturenames  # type: ignore[attr-defined]
            if name in SCOPE_OF_FIRST_RUN
            and module_of(item.nodeid) not in FIRST_RUN_SCOPES[SCOPE_OF_FIRST_RUN[name]]
        }
    )
    if strays:
        raise pytest.UsageError(f"add {strays} to FIRST_RUN_SCOPES in tests/support/scheduling.py")
