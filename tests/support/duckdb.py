"""Reading a DuckDB warehouse file in a test."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb


def query(db_path: Path, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(db_path), read_only=True) as con:
        return con.execute(sql).fetchall()
