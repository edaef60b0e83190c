"""The platform's two privacy keys: the marts' PII salt and the erasures' tombstone key.

Each comes from a secret (``.dlt/secrets.toml``, the environment or a Prefect Secret block,
like every other secret); without one, a random value is generated once and kept in the
warehouse's ``restricted`` dataset, so a fresh worker finds it there. Fine for the demo; in
production set both, so hashes survive a rebuilt warehouse and match across environments.

- ``transform.pii_salt`` (``TRANSFORM__PII_SALT``): the salt of ``pii_hash()``
  (transform/macros/pii_hash.sql). dbt reads it from ``restricted.pii_salt``, never from
  SQL text (compiled models and dbt's logs are artifacts), so a configured salt is written
  there too.
- ``privacy.tombstone_key`` (``PRIVACY__TOMBSTONE_KEY``): the key of the keyed hashes an
  erasure leaves (flows/privacy/). Its own key, never the salt: a mart hash and a tombstone
  of the same email must not be comparable. A configured key stays out of the warehouse.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from enum import StrEnum

import dlt
from dlt.destinations.exceptions import DatabaseUndefinedRelation

from dlt_sources.common.packages import forget_state_unknown_to_warehouse
from flows.config import Settings
from flows.pipelines import warehouse_pipeline

DATASET = "restricted"


class SaltSource(StrEnum):
    SECRET = "written from the secret"
    STORED = "the secret, as already stored"
    KEPT = "kept from the warehouse"
    GENERATED = "generated (set the secret in production)"

    @property
    def written(self) -> bool:
        """A new salt: every hashed column must be computed again (flows/build.py)."""
        return self in (SaltSource.SECRET, SaltSource.GENERATED)


@dataclass(frozen=True)
class RestrictedKey:
    """A secret value the platform needs, from the secrets or kept in ``restricted.<table>``."""

    table: str
    secret: str
    # whether a configured secret is written to the warehouse too (dbt reads the salt there)
    stored_when_configured: bool

    def ensure(self, settings: Settings) -> SaltSource:
        """Make sure the value exists where it is read; says where it came from."""
        return self._resolve(settings)[1]

    def value(self, settings: Settings) -> str:
        """The value itself (generated and kept on first use when no secret is configured)."""
        return self._resolve(settings)[0]

    def _resolve(self, settings: Settings) -> tuple[str, SaltSource]:
        pipeline = warehouse_pipeline(settings, "elt_restricted", DATASET)
        if forget_state_unknown_to_warehouse(pipeline):  # the warehouse says whether the value exists
            pipeline = warehouse_pipeline(settings, "elt_restricted", DATASET)
        configured = dlt.secrets.get(self.secret)
        if configured and not self.stored_when_configured:
            return str(configured), SaltSource.SECRET
        stored = self._stored(pipeline)
        if configured:
            if stored == str(configured):
                return stored, SaltSource.STORED
            value, source = str(configured), SaltSource.SECRET
        elif stored is not None:
            return stored, SaltSource.KEPT
        else:
            value, source = secrets.token_hex(32), SaltSource.GENERATED
        pipeline.run(
            [{"salt": value}],
            table_name=self.table,
            write_disposition="replace",
            loader_file_format=settings.loader_file_format,
        ).raise_on_failed_jobs()
        return value, source

    def _stored(self, pipeline: dlt.Pipeline) -> str | None:
        """The kept value, or None before the first one."""
        try:
            with pipeline.sql_client() as client:
                rows = client.execute_sql(f"select salt from {client.make_qualified_table_name(self.table)}")
        except DatabaseUndefinedRelation:
            return None
        return str(rows[0][0]) if rows else None


PII_SALT = RestrictedKey("pii_salt", "transform.pii_salt", stored_when_configured=True)
TOMBSTONE_KEY = RestrictedKey("tombstone_key", "privacy.tombstone_key", stored_when_configured=False)
TABLE = PII_SALT.table


def ensure_pii_salt(settings: Settings) -> SaltSource:
    """Make sure ``restricted.pii_salt`` holds the salt; says where the salt came from."""
    return PII_SALT.ensure(settings)
