"""dlt source for Stripe `customers`, `charges` and `refunds`.

Each endpoint becomes a merge-on-`id` resource, loaded incrementally on `created`: the
last seen `created` is sent as `created[gte]` so Stripe does the filtering, and dlt drops
the boundary rows it already loaded. Nested objects (`metadata`, ...) stay JSON columns
(`max_table_nesting=0`) and money stays in minor units, exactly as Stripe returns it.

Limitation by design: Stripe never changes `created`, so updates to existing objects
(a charge later refunded, edited metadata) are not picked up by this cursor; a full
refresh or an Events-API based resource is needed for that.
"""

# No `from __future__ import annotations` here: dlt finds the incremental argument of a
# resource by resolving its annotation at runtime, and a string annotation silently
# leaves the incremental unbound (IncrementalUnboundError at extract time).
from collections.abc import Iterator
from typing import Any

import dlt
from dlt.sources import DltResource

from . import settings
from .helpers import Page, StripeClient

__all__ = ["StripeClient", "stripe_source"]

# Declared types keep the raw schema stable for dbt: a column is created even when a
# sync sees only nulls (e.g. no charge has a `description` yet), `created` stays an int
# and `metadata` stays JSON whatever nesting level a caller configures.
_BASE_COLUMNS: dict[str, dict[str, Any]] = {
    "id": {"data_type": "text", "nullable": False},
    "object": {"data_type": "text"},
    "created": {"data_type": "bigint", "nullable": False},
    "livemode": {"data_type": "bool"},
    "metadata": {"data_type": "json"},
}
_COLUMNS: dict[str, dict[str, dict[str, Any]]] = {
    "customers": {
        **_BASE_COLUMNS,
        "email": {"data_type": "text"},
        "name": {"data_type": "text"},
    },
    "charges": {
        **_BASE_COLUMNS,
        "amount": {"data_type": "bigint"},
        "amount_refunded": {"data_type": "bigint"},
        "currency": {"data_type": "text"},
        "customer": {"data_type": "text"},
        "status": {"data_type": "text"},
        "paid": {"data_type": "bool"},
        "refunded": {"data_type": "bool"},
        "description": {"data_type": "text"},
    },
    "refunds": {
        **_BASE_COLUMNS,
        "amount": {"data_type": "bigint"},
        "charge": {"data_type": "text"},
        "currency": {"data_type": "text"},
        "status": {"data_type": "text"},
        "reason": {"data_type": "text"},
    },
}


def _created_filter(created: dlt.sources.incremental[int]) -> dict[str, int]:
    """Translate the incremental window into Stripe's `created[...]` list filters."""
    params: dict[str, int] = {}
    if created.last_value is not None:
        op = "gte" if created.range_start == "closed" else "gt"
        params[f"created[{op}]"] = int(created.last_value)
    if created.end_value is not None:
        op = "lte" if created.range_end == "closed" else "lt"
        params[f"created[{op}]"] = int(created.end_value)
    return params


@dlt.source(name="stripe", section="stripe", max_table_nesting=0)
def stripe_source(
    api_key: str = dlt.secrets.value,
    base_url: str = settings.DEFAULT_BASE_URL,
    page_size: int = settings.PAGE_SIZE,
    initial_created: int = settings.INITIAL_CREATED,
    request_timeout: float = settings.REQUEST_TIMEOUT,
    max_retries: int = settings.MAX_RETRIES,
    backoff_factor: float = settings.BACKOFF_FACTOR,
) -> list[DltResource]:
    """Stripe `customers`, `charges`, `refunds` as incremental merge resources.

    Config lives under `sources.stripe` (env `SOURCES__STRIPE__API_KEY`,
    `SOURCES__STRIPE__BASE_URL`, ...). `initial_created` (unix seconds) bounds the
    first sync; later syncs resume from the stored `created` cursor.
    """
    if not 1 <= page_size <= settings.MAX_PAGE_SIZE:
        raise ValueError(f"page_size must be 1..{settings.MAX_PAGE_SIZE}, got {page_size}")
    # Fail fast on an empty key / malformed URL before any resource runs.
    StripeClient(api_key, base_url).close()

    def list_objects(
        endpoint: str,
        created: dlt.sources.incremental[int],
    ) -> Iterator[Page]:
        """Pages of one list endpoint, newest first, filtered server-side by `created`."""
        with StripeClient(
            api_key,
            base_url,
            timeout=request_timeout,
            max_retries=max_retries,
            backoff_factor=backoff_factor,
        ) as client:
            yield from client.paginate(endpoint, _created_filter(created), page_size)

    return [
        dlt.resource(
            list_objects,
            name=endpoint,
            write_disposition="merge",
            primary_key="id",
            columns=_COLUMNS.get(endpoint),
        )(
            endpoint,
            created=dlt.sources.incremental("created", initial_value=initial_created),
        )
        for endpoint in settings.ENDPOINTS
    ]
