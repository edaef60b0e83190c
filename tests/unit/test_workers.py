"""How one test process hands a result to another (tests/support/workers.py)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.support.workers import publish, wait_for


def test_a_value_published_later_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "marts.json"
    later = threading.Timer(0.3, publish, (path, {"marts": {"fct_orders": [200, "abc"]}}))
    later.start()
    assert wait_for(path, timeout=10, what="the marts") == {"marts": {"fct_orders": [200, "abc"]}}
    assert [entry.name for entry in tmp_path.iterdir()] == ["marts.json"]  # no partial file left


def test_a_value_that_never_comes_fails_naming_it(tmp_path: Path) -> None:
    with pytest.raises(pytest.fail.Exception, match="the marts did not arrive in 1 s"):
        wait_for(tmp_path / "never.json", timeout=1, what="the marts")
