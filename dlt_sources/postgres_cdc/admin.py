"""Operations on a CDC source's publication and slot, behind the ``elt cdc`` commands.

Two roles on purpose: the publication is created by an admin who owns the tables
(``setup``, ``drop --publication``); the pipeline's replication role (``LOGIN
REPLICATION`` plus ``SELECT``) creates, reads and drops its slot. Never imports Prefect.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg2

from dlt_sources.errors import SourceError
from dlt_sources.postgres_cdc import catalog
from dlt_sources.postgres_cdc.settings import CdcSettings


def setup(source: str, settings: CdcSettings, tables: Sequence[str], admin_dsn: str, role: str | None) -> str:
    """Create or extend the publication and grant SELECT to the replication role; returns a summary."""
    role = role or psycopg2.extensions.parse_dsn(settings.dsn).get("user")
    if not role:
        raise SourceError(
            f"source {source}: name the replication role (--role); the credentials have no user"
        )
    with catalog.connection(admin_dsn, source) as admin:
        admin.autocommit = False
        described = catalog.describe_tables(admin, source, settings.schema, tables)
        catalog.setup_publication(admin, settings.publication, described, role)
    names = ", ".join(table.qualified for table in described)
    return f"publication {settings.publication} publishes {names}; {role} may SELECT them"


def status(source: str, settings: CdcSettings) -> list[tuple[str, str]]:
    """The publication, the slot and its lag, as (label, value) lines."""
    with catalog.connection(settings.dsn, source) as conn:
        published = catalog.publication_tables(conn, settings.publication)
        slot = catalog.slot_info(conn, settings.slot_name)
    lines = [
        (
            "publication",
            settings.publication if published is not None else f"{settings.publication} (missing)",
        ),
        ("published tables", ", ".join(published or []) or "-"),
    ]
    if slot is None:
        lines.append(("slot", f"{settings.slot_name} (not created yet: the first run creates it)"))
        return lines
    alert = "ALERT: above" if slot.retained_bytes > settings.lag_alert_bytes else "below"
    lines += [
        ("slot", settings.slot_name),
        (
            "wal_status",
            f"{slot.wal_status}{' - run `elt cdc resnapshot ' + source + '`' if slot.lost else ''}",
        ),
        ("active", "yes (a run is reading it)" if slot.active else "no"),
        (
            "retained WAL",
            f"{slot.retained_bytes:,} bytes ({alert} the {settings.lag_alert_bytes:,}-byte threshold)",
        ),
        ("not yet acknowledged", f"{slot.unconfirmed_bytes:,} bytes of WAL"),
    ]
    return lines


def drop(source: str, settings: CdcSettings, publication_admin_dsn: str | None) -> list[str]:
    """Drop the slot (and, given an admin connection, the publication); returns what was done."""
    done = []
    with catalog.connection(settings.dsn, source) as conn:
        dropped = catalog.drop_slot(conn, source, settings.slot_name)
    done.append(f"slot {settings.slot_name} {'dropped' if dropped else 'did not exist'}")
    if publication_admin_dsn:
        with catalog.connection(publication_admin_dsn, source) as admin:
            catalog.drop_publication(admin, settings.publication)
        done.append(f"publication {settings.publication} dropped")
    return done
