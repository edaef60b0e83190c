"""The shop's operational PostgreSQL database, loaded incrementally into ``raw_shop``.

Each table is read with dlt's ``sql_table`` on the pyarrow backend (Arrow batches
skip dlt's row-by-row normalizer), filtered by its ``updated_at`` cursor, and
merged on its primary key. The cursor lives in dlt's pipeline state, which dlt
stores in the warehouse, so a fresh worker resumes where the last run stopped.
Settings: ``sources.shop.credentials`` (``SOURCES__SHOP__CREDENTIALS``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import dlt
import sqlalchemy as sa
from dlt.common.configuration.specs import ConnectionStringCredentials
from dlt.extract.resource import DltResource
from dlt.sources.sql_database import sql_table

from dlt_sources.errors import SourceError, SourceUnreachable
from dlt_sources.shop.settings import CHUNK_SIZE, TABLES

SOURCE = "shop"


@dlt.source(name=SOURCE, max_table_nesting=0)
def shop_source(
    credentials: ConnectionStringCredentials = dlt.secrets.value,
    tables: Sequence[str] | None = None,
) -> Iterator[DltResource]:
    """One merge resource per shop table; ``tables`` limits the load to some of them."""
    unknown = sorted(set(tables or ()) - TABLES.keys())
    if unknown:
        raise SourceError(
            f"source {SOURCE}: unknown table(s) {', '.join(unknown)}; known: {', '.join(TABLES)}"
        )
    engine = connect(credentials)
    for name in tables or TABLES:
        spec = TABLES[name]
        yield sql_table(
            credentials=engine,
            table=name,
            schema="public",
            backend="pyarrow",
            chunk_size=CHUNK_SIZE,
            reflection_level="full_with_precision",
            incremental=dlt.sources.incremental(spec.cursor),
            primary_key=spec.primary_key,
            write_disposition="merge",
        )


def connect(credentials: ConnectionStringCredentials) -> sa.Engine:
    """An engine that has proven it can connect, so an unreachable database fails
    here with a message naming the setting, not deep inside extraction."""
    url = sa.make_url(credentials.to_native_representation())
    if url.drivername == "postgresql":
        # SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; we ship psycopg2,
        # which the CDC source also needs for its replication protocol support.
        url = url.set(drivername="postgresql+psycopg2")
    engine = sa.create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 10})
    try:
        with engine.connect():
            pass
    except sa.exc.OperationalError as exc:
        engine.dispose()
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        raise SourceUnreachable(
            f"source {SOURCE}: cannot connect to {url.render_as_string(hide_password=True)} "
            f"(setting sources.shop.credentials): {reason}",
        ) from None
    return engine
