"""How ``make test``'s two xdist workers share the suite: whole modules, so a module's tests
run in order and its module fixtures (servers, stand-ins) start once; and the modules that
share the session's first runs (tests/support/first_runs.py) on one worker together, so
each first run is made once.

A scheduler of our own because pytest-xdist 3.8's ``--dist loadgroup`` does nothing under
pytest 9 (it renames ``item._nodeid``, which pytest 9 no longer reads, so every test
stays its own group) and ``--dist loadfile`` would make a first run once per worker.
"""

from __future__ import annotations

from typing import Final

import pytest
from xdist.scheduler import LoadScopeScheduling

# the modules using a first-run fixture; tests/conftest.py refuses a module missing here
FIRST_RUN_MODULES: Final[frozenset[str]] = frozenset(
    {
        "tests/cloud/test_bigquery_flow.py",
        "tests/cloud/test_marts_agree.py",
        "tests/cloud/test_snowflake_flow.py",
        "tests/e2e/test_dev_environment.py",
    }
)
FIRST_RUN_SCOPE: Final[str] = "first runs"


def scope_of(nodeid: str) -> str:
    module = nodeid.split("::", 1)[0]
    return FIRST_RUN_SCOPE if module in FIRST_RUN_MODULES else module


class ModuleScheduling(LoadScopeScheduling):
    """xdist's scope scheduling with a module, or the first-run modules together, as the scope."""

    def _split_scope(self, nodeid: str) -> str:
        return scope_of(nodeid)


def check_first_run_modules(items: list[pytest.Item], first_runs: tuple[str, ...]) -> None:
    """A module that uses a first run but is not in FIRST_RUN_MODULES would make it again on
    the other worker: stop the session saying which."""
    strays = {
        item.nodeid.split("::", 1)[0]
        for item in items
        if any(name in first_runs for name in item.fixturenames)  # type: ignore[attr-defined]
    } - FIRST_RUN_MODULES
    if strays:
        raise pytest.UsageError(f"add {sorted(strays)} to FIRST_RUN_MODULES in tests/support/scheduling.py")
