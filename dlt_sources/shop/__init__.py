"""The shop's operational PostgreSQL database, replicated into ``raw_shop`` through CDC.

Logical replication (``dlt_sources/postgres_cdc``): the first run loads a snapshot
of every table, later runs apply the inserts, updates and deletes committed since,
merged on each table's primary key. The replication position lives in dlt's pipeline
state, stored in the warehouse, so a fresh worker resumes where the last run stopped.
Settings: ``sources.shop.*`` (see README.md and ``postgres_cdc/settings.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import dlt
from dlt.extract.resource import DltResource

from dlt_sources.common.lineage import Origin, database_namespace
from dlt_sources.postgres_cdc import CdcReport, after_load, replication_resource, resolve_settings
from dlt_sources.shop.settings import PRIVACY, TABLES
from dlt_sources.spec import FreshnessSla, SourceSpec

SOURCE = "shop"


@dlt.source(name=SOURCE, max_table_nesting=0)
def shop_source() -> Iterator[DltResource]:
    """All shop tables through the pipeline's one replication slot."""
    yield replication_resource(SOURCE, TABLES, resolve_settings(SOURCE))


def shop_after_load(pipeline: dlt.Pipeline) -> CdcReport:
    """Apply TRUNCATEs and report slot lag once the load is committed (called by the ingest flow)."""
    return after_load(pipeline, SOURCE)


def shop_origin() -> Origin:
    """The replicated tables in the shop's database."""
    settings = resolve_settings(SOURCE)
    return Origin(database_namespace(settings.dsn), {table: f"{settings.schema}.{table}" for table in TABLES})


SPEC = SourceSpec(
    name=SOURCE,
    factory=shop_source,
    tables=TABLES,
    cdc_tables=TABLES,
    after_load=shop_after_load,
    schedule="5 * * * *",
    origin="the shop's PostgreSQL database, replicated through logical decoding (CDC)",
    freshness=FreshnessSla(default=timedelta(hours=2), tables={"orders": timedelta(hours=1)}),
    lineage=shop_origin,
    privacy=PRIVACY,
)
