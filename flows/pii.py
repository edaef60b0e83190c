"""The salt of ``pii_hash()`` (transform/macros/pii_hash.sql), kept in the warehouse.

Why in the warehouse: marts hash personal data with a secret salt, which must not
appear in SQL text (compiled models and dbt's logs are artifacts). dbt reads it from
``restricted.pii_salt``; this module writes that one-row table through dlt, so it works
the same on every warehouse and a fresh worker finds it there.

The salt comes from the secret ``transform.pii_salt`` (``TRANSFORM__PII_SALT``,
``.dlt/secrets.toml`` or a Prefect Secret block, like every other secret). Without it,
a random salt is generated once and kept: fine for the demo, but in production set it,
so hashes survive a rebuilt warehouse and match across environments.
"""

from __future__ import annotations

import secrets
from enum import StrEnum

import dlt
from dlt.destinations.exceptions import DatabaseUndefinedRelation

from dlt_sources.common.packages import forget_state_unknown_to_warehouse
from flows.config import Settings
from flows.pipelines import warehouse_pipeline

DATASET = "restricted"
TABLE = "pii_salt"
SECRET_KEY = "transform.pii_salt"


class SaltSource(StrEnum):
    SECRET = "written from the secret transform.pii_salt"
    STORED = "the secret transform.pii_salt, as already stored"
    KEPT = "kept from the warehouse"
    GENERATED = "generated (set transform.pii_salt in production)"

    @property
    def written(self) -> bool:
        """A new salt: every hashed column must be computed again (flows/build.py)."""
        return self in (SaltSource.SECRET, SaltSource.GENERATED)


def ensure_pii_salt(settings: Settings) -> SaltSource:
    """Make sure ``restricted.pii_salt`` holds the salt; says where the salt came from."""
    pipeline = warehouse_pipeline(settings, "elt_restricted", DATASET)
    if forget_state_unknown_to_warehouse(pipeline):  # the warehouse says whether the salt exists
        return ensure_pii_salt(settings)
    salt = dlt.secrets.get(SECRET_KEY)
    if salt:
        if _stored_salt(pipeline) == str(salt):
            return SaltSource.STORED
        source = SaltSource.SECRET
    else:
        pipeline.sync_destination()  # a fresh worker learns from the warehouse whether it exists
        if pipeline.default_schema_name and TABLE in pipeline.default_schema.data_table_names():
            return SaltSource.KEPT
        salt, source = secrets.token_hex(32), SaltSource.GENERATED
    pipeline.run(
        [{"salt": str(salt)}],
        table_name=TABLE,
        write_disposition="replace",
        loader_file_format=settings.loader_file_format,
    ).raise_on_failed_jobs()
    return source


def _stored_salt(pipeline: dlt.Pipeline) -> str | None:
    """The salt in the warehouse, or None before the first one: a read instead of a load."""
    try:
        with pipeline.sql_client() as client:
            rows = client.execute_sql(f"select salt from {client.make_qualified_table_name(TABLE)}")
    except DatabaseUndefinedRelation:
        return None
    return str(rows[0][0]) if rows else None
