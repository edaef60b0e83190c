"""Settings of a Postgres CDC source, resolved the dlt way from ``sources.<source>.*``.

One spec serves the dlt source, the post-load step and the ``elt cdc`` commands,
so all three read the same slot, publication and thresholds.
"""

from __future__ import annotations

import re
from typing import Final

from dlt.common.configuration import configspec, resolve_configuration
from dlt.common.configuration.specs import BaseConfiguration, ConnectionStringCredentials

from dlt_sources.common.rejects import MAX_STRING_BYTES, check_mode
from dlt_sources.errors import SourceError

DELETE_MODES: Final = ("hard", "soft")
# PostgreSQL's rule for slot names (also keeps them safe in replication commands).
_SLOT_NAME = re.compile(r"^[a-z0-9_]{1,63}$")


@configspec
class CdcSettings(BaseConfiguration):
    credentials: ConnectionStringCredentials = None
    """The replication role's URL: LOGIN REPLICATION and SELECT on the tables."""
    schema: str = "public"
    slot_name: str | None = None
    """Default ``elt_<source>``: one slot per pipeline."""
    publication: str | None = None
    """Default ``elt_<source>``; created by an admin (``elt cdc setup``)."""
    delete_mode: str = "hard"
    """``hard``: deleted rows leave the warehouse; ``soft``: they stay with ``_cdc_deleted = true``."""
    max_changes_per_run: int = 2_000_000
    """Changes held in memory by one run; the next run continues after the last full transaction."""
    lag_alert_bytes: int = 1 << 30
    """Retained WAL above which the run report raises an alert."""
    resnapshot: bool = False
    """Drop the slot and reload every table from a new snapshot (``elt cdc resnapshot``)."""
    bad_records: str = "quarantine"
    """A row no warehouse can hold: ``quarantine`` it into ``_rejected_records`` or ``fail`` the run."""
    max_string_bytes: int = MAX_STRING_BYTES
    """Text or bytes values longer than this are bad records (default: Snowflake's limit)."""

    @property
    def dsn(self) -> str:
        """A libpq URL (a SQLAlchemy driver suffix such as ``+psycopg2`` is dropped)."""
        _, rest = self.credentials.to_native_representation().split("://", 1)
        return f"postgresql://{rest}"


def resolve_settings(source: str) -> CdcSettings:
    """``sources.<source>.*`` from the environment, ``.dlt/`` files or Prefect Secret blocks."""
    settings = resolve_configuration(CdcSettings(), sections=("sources", source))
    settings.slot_name = settings.slot_name or f"elt_{source}"
    settings.publication = settings.publication or f"elt_{source}"
    if not _SLOT_NAME.match(settings.slot_name):
        raise SourceError(
            f"source {source}: sources.{source}.slot_name={settings.slot_name!r} must be 1-63 "
            "characters of a-z, 0-9 and _"
        )
    if settings.delete_mode not in DELETE_MODES:
        raise SourceError(
            f"source {source}: sources.{source}.delete_mode={settings.delete_mode!r}; "
            f"choose one of {', '.join(DELETE_MODES)}"
        )
    settings.bad_records = check_mode(source, settings.bad_records)
    return settings
