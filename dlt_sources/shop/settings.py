"""Which shop tables are loaded, and how each one is kept current."""

from dataclasses import dataclass


@dataclass(frozen=True)
class TableSpec:
    """How one table is loaded: merged on ``primary_key``, read incrementally by ``cursor``."""

    primary_key: str = "id"
    cursor: str = "updated_at"


TABLES: dict[str, TableSpec] = {
    "customers": TableSpec(),
    "products": TableSpec(),
    "orders": TableSpec(),
    "order_items": TableSpec(),
}

# Rows per Arrow batch read from the database; also the size of dlt's load files.
CHUNK_SIZE = 50_000
