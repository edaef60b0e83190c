"""Every source the platform loads, one ``SourceSpec`` each: the one place a source is registered.

Ingest (which factory, which after-load hook), the deployments (``deployments/prefect.yaml``
is checked against the schedules here), the freshness SLAs, ``elt status`` and the
``elt cdc`` commands all read this registry. A Python source exports its ``SPEC`` from its
package and is listed in ``PYTHON_SOURCES``; a YAML file in ``dlt_sources/rest/`` or
``dlt_sources/sql_database/`` is registered by being there (its ``schedule`` and
``freshness`` keys fill its record). Schedules are staggered, so that on DuckDB (one
writer at a time) the sources' runs rarely wait for each other.
"""

from __future__ import annotations

from dlt_sources import github, shop, stripe
from dlt_sources.rest import declared_sources
from dlt_sources.spec import SourceSpec
from dlt_sources.sql_database import declared_databases

PYTHON_SOURCES: tuple[SourceSpec, ...] = (shop.SPEC, stripe.SPEC, github.SPEC)

# The declared sources come first, so a YAML file can never shadow a Python source of the same name.
SOURCES: dict[str, SourceSpec] = {
    **declared_sources(),
    **declared_databases(),
    **{spec.name: spec for spec in PYTHON_SOURCES},
}


def cdc_sources() -> dict[str, SourceSpec]:
    """The sources replicated through Postgres CDC (their slots, lag, and the ``elt cdc`` commands)."""
    return {name: spec for name, spec in SOURCES.items() if spec.cdc_tables}
