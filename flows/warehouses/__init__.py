"""The warehouses the platform runs on, found by name (``ELT_WAREHOUSE``, ``--warehouse``).

Adding a warehouse is adding its module here and one line to ``WAREHOUSES``; the README's
"Adding a warehouse" lists the files outside Python it needs.
"""

from __future__ import annotations

from flows.errors import ConfigError
from flows.warehouses.base import Warehouse
from flows.warehouses.bigquery import BigQuery
from flows.warehouses.duckdb import DuckDB
from flows.warehouses.snowflake import Snowflake

# the first is the default
WAREHOUSES: dict[str, Warehouse] = {
    warehouse.name: warehouse for warehouse in (DuckDB(), Snowflake(), BigQuery())
}
DEFAULT_WAREHOUSE: str = next(iter(WAREHOUSES))


def warehouse_named(name: str) -> Warehouse:
    """The warehouse called ``name`` (any case, spaces ignored); a ConfigError listing the choices."""
    try:
        return WAREHOUSES[name.strip().lower()]
    except KeyError:
        raise ConfigError(
            f"ELT_WAREHOUSE={name!r} is not a known warehouse; choose one of {', '.join(WAREHOUSES)}"
        ) from None


__all__ = ["DEFAULT_WAREHOUSE", "WAREHOUSES", "Warehouse", "warehouse_named"]
