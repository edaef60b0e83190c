"""The xdist scheduler's order (tests/support/scheduling.py): the longest scopes first, a
first run's modules in their order, and no module using a first run outside its scope."""

from __future__ import annotations

from collections import OrderedDict
from types import SimpleNamespace
from typing import Any

import pytest

from tests.support.scheduling import (
    BIGQUERY_FIRST_RUN,
    SNOWFLAKE_AND_DUCKDB_FIRST_RUNS,
    check_first_run_modules,
    longest_first,
    scope_of,
)

COLLECTED = [
    "tests/cloud/test_bigquery_flow.py::test_first_run",
    "tests/cloud/test_marts_agree.py::test_agree",
    "tests/cloud/test_snowflake_flow.py::test_first_run",
    "tests/cloud/test_snowflake_flow.py::test_rerun",
    "tests/e2e/test_dev_environment.py::test_prefix",
    "tests/e2e/test_elt_flow.py::test_first_run",
    "tests/integration/test_contracts.py::test_pass",
    "tests/integration/test_deployments.py::test_deploy",
    "tests/unit/test_config.py::test_defaults",
]


def queue_of(nodeids: list[str]) -> OrderedDict[str, dict[str, bool]]:
    """The queue xdist builds: scopes in collection order, each with its node ids."""
    queue: OrderedDict[str, dict[str, bool]] = OrderedDict()
    for nodeid in nodeids:
        queue.setdefault(scope_of(nodeid), {})[nodeid] = False
    return queue


def test_the_longest_scopes_start_first_and_the_rest_keep_their_order() -> None:
    queue = queue_of(list(reversed(COLLECTED)))
    longest_first(queue)
    assert list(queue) == [
        "tests/e2e/test_elt_flow.py",
        BIGQUERY_FIRST_RUN,
        SNOWFLAKE_AND_DUCKDB_FIRST_RUNS,
        "tests/integration/test_deployments.py",
        "tests/unit/test_config.py",
        "tests/integration/test_contracts.py",
    ]


def test_the_agreement_runs_after_the_modules_that_share_its_first_runs() -> None:
    queue = queue_of(COLLECTED)
    longest_first(queue)
    assert list(queue[SNOWFLAKE_AND_DUCKDB_FIRST_RUNS]) == [
        "tests/cloud/test_snowflake_flow.py::test_first_run",
        "tests/cloud/test_snowflake_flow.py::test_rerun",
        "tests/e2e/test_dev_environment.py::test_prefix",
        "tests/cloud/test_marts_agree.py::test_agree",
    ]


def item(nodeid: str, *fixtures: str) -> Any:
    return SimpleNamespace(nodeid=nodeid, fixturenames=list(fixtures))


def test_a_module_using_a_first_run_outside_its_scope_stops_the_session() -> None:
    check_first_run_modules(
        [
            item("tests/cloud/test_bigquery_flow.py::test_first_run", "bigquery_first_run"),
            item("tests/cloud/test_marts_agree.py::test_agree", "snowflake_first_run", "bigquery_marts"),
        ]
    )
    with pytest.raises(pytest.UsageError, match=r"tests/e2e/test_new\.py \(uses bigquery_first_run\)"):
        check_first_run_modules([item("tests/e2e/test_new.py::test_it", "bigquery_first_run")])
