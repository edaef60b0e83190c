"""Reading a DuckDB warehouse file in a test."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pytest


def query(db_path: Path, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(db_path), read_only=True) as con:
        return con.execute(sql).fetchall()


def count_opens(action: Callable[[], object]) -> int:
    """How many times ``action`` opened a DuckDB database (``duckdb.connect``)."""
    opened = 0
    real_connect = duckdb.connect

    def counting(*args: Any, **kwargs: Any) -> duckdb.DuckDBPyConnection:
        nonlocal opened
        opened += 1
        return real_connect(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(duckdb, "connect", counting)
        action()
    return opened
