"""`elt deploy` refuses quickly, in one line, when there is no Prefect API to register with.

The happy path (a real server, worker and runs) is tests/integration/test_deployments.py.
"""

from __future__ import annotations

import socket
import time

import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.deploy import default_pool_limit


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


def test_deploy_without_api_url_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN no PREFECT_API_URL WHEN deploying THEN one line says what to set, exit code 1
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    result = CliRunner().invoke(app, ["deploy"])
    assert result.exit_code == 1, result.output
    (line,) = error_lines(result.output)
    assert "PREFECT_API_URL is not set" in line


def test_deploy_to_unreachable_api_fails_within_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN an API URL where nothing listens
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("PREFECT_API_URL", f"http://127.0.0.1:{port}/api")
    # WHEN deploying THEN it fails at once with one line naming the URL
    started = time.monotonic()
    result = CliRunner().invoke(app, ["deploy"])
    assert time.monotonic() - started < 10
    assert result.exit_code == 1, result.output
    (line,) = error_lines(result.output)
    assert f"127.0.0.1:{port}/api does not answer" in line


@pytest.mark.parametrize(("warehouse", "limit"), [("duckdb", 1), ("snowflake", None), ("bigquery", None)])
def test_pool_runs_one_flow_at_a_time_only_on_duckdb(
    monkeypatch: pytest.MonkeyPatch, warehouse: str, limit: int | None
) -> None:
    monkeypatch.setenv("ELT_WAREHOUSE", warehouse)
    assert default_pool_limit() == limit
