"""One canonical form for a row read from PostgreSQL, DuckDB or an API stand-in, so the
same row hashes the same wherever it was read (the row-by-row comparisons of the tests
and of the reliability campaign)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any


def canonical(value: Any) -> Any:
    """One representation for a value: timestamps in UTC, exact decimals, sorted JSON."""
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC).isoformat()
    if isinstance(value, Decimal):
        return str(value.normalize())
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.dumps(json.loads(value), sort_keys=True)
        except ValueError:
            return value
    if isinstance(value, memoryview):
        return bytes(value)
    return value


def row_hash(row: Iterable[Any]) -> str:
    return hashlib.md5(repr(tuple(map(canonical, row))).encode()).hexdigest()
