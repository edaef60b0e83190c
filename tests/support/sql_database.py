"""The SQL database source's test source ``pgtest``: its YAML settings and the statements
that fill its PostgreSQL database (the source's own tests and the backfill tests)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import psycopg2

SOURCE = "pgtest"
# Read the DSN from SOURCES__PGTEST__CREDENTIALS (set by the ``pgtest_database`` fixture)
# and load ``items`` incrementally on ``updated_at``.
INCREMENTAL_ITEMS = """
credentials: "{{ secrets.sources.pgtest.credentials }}"
tables:
  - name: items
    primary_key: id
    cursor: updated_at
"""


def execute(dsn: str, sql: str, params: Any = None) -> None:
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(sql, params)
    conn.close()


def write_config(folder: Path, body: str) -> Path:
    """The source's YAML file in ``folder`` (as under ``dlt_sources/sql_database/``)."""
    folder.mkdir(exist_ok=True)
    path = folder / f"{SOURCE}.yml"
    path.write_text(textwrap.dedent(body))
    return path
