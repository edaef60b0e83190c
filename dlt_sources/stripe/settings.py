"""Defaults for the Stripe source, kept in one place so docs, tests and code agree."""

from __future__ import annotations

DEFAULT_BASE_URL = "https://api.stripe.com"
"""Production API; tests and the demo point `sources.stripe.base_url` at a local stand-in."""

ENDPOINTS: tuple[str, ...] = ("customers", "charges", "refunds", "invoices")
"""List endpoints loaded as resources (one table each, named like the endpoint)."""

TABLES: tuple[str, ...] = (*ENDPOINTS, "events")
"""Every table the source loads: the objects and the events feed that keeps them current."""

OBJECTS: dict[str, str] = {
    "customers": "customer",
    "charges": "charge",
    "refunds": "refund",
    "invoices": "invoice",
}
"""Table -> Stripe ``object`` value; an event's ``data.object.object`` picks its table."""

EVENT_TYPES: dict[str, tuple[str, ...]] = {
    "customers": ("customer.created", "customer.updated", "customer.deleted"),
    "charges": (
        "charge.captured",
        "charge.expired",
        "charge.failed",
        "charge.pending",
        "charge.refunded",
        "charge.succeeded",
        "charge.updated",
    ),
    "refunds": ("refund.created", "refund.updated", "refund.failed", "charge.refund.updated"),
    "invoices": (
        "invoice.created",
        "invoice.deleted",
        "invoice.finalization_failed",
        "invoice.finalized",
        "invoice.marked_uncollectible",
        "invoice.overdue",
        "invoice.paid",
        "invoice.payment_action_required",
        "invoice.payment_failed",
        "invoice.payment_succeeded",
        "invoice.sent",
        "invoice.updated",
        "invoice.voided",
    ),
}
"""Event types (Stripe docs, "Types of events") whose ``data.object`` is a row of the table.
Sent as ``types[]`` (at most 20 per request). ``invoice.upcoming`` is left out: its
object has no id and is not stored by Stripe."""

EXPANDABLE: frozenset[str] = frozenset(
    {
        "customer",
        "charge",
        "invoice",
        "payment_intent",
        "subscription",
        "balance_transaction",
        "default_payment_method",
        "payment_method",
        "source_transfer_reversal",
        "transfer_reversal",
        "application_fee",
        "on_behalf_of",
        "source_transfer",
        "transfer",
        "review",
        "latest_invoice",
        "test_clock",
    }
)
"""Fields Stripe can expand into objects; we keep (or fold back to) the id."""


EVENT_RETENTION_S = 30 * 24 * 3600
"""Stripe lists the events of the last 30 days only."""
EVENT_RETENTION_MARGIN_S = 24 * 3600
"""Fall back to a full re-read a day early, so clock skew and a slow run cannot lose events."""

SCHEMA_POLICIES: dict[str, str] = {"evolve": "evolve", "freeze": "freeze", "discard": "discard_value"}
"""`sources.stripe.schema_policy` -> dlt `schema_contract` mode for `data_type`."""
SCHEMA_POLICY = "evolve"
SCHEMA_POLICY_SETTING = "sources.stripe.schema_policy"

PAGE_SIZE = 100
"""Stripe's maximum `limit`; fewer requests per sync."""
MAX_PAGE_SIZE = 100

INITIAL_CREATED = 0
"""Unix seconds the first sync starts from: 0 loads the full history."""

REQUEST_TIMEOUT = 30.0
"""Seconds for connect and read; Stripe list calls answer well within this."""

MAX_RETRIES = 3
"""Retries (after the first attempt) for 429, 5xx and connection errors."""
BACKOFF_FACTOR = 0.5
"""Exponential backoff base in seconds: 0.5, 1, 2, ... unless `Retry-After` says otherwise."""
MAX_BACKOFF = 30.0
"""Cap for any single wait, including a server-sent `Retry-After`."""

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
AUTH_STATUSES = frozenset({401, 403})

API_KEY_SETTING = "sources.stripe.api_key"
API_KEY_ENV = "SOURCES__STRIPE__API_KEY"
BASE_URL_SETTING = "sources.stripe.base_url"
BASE_URL_ENV = "SOURCES__STRIPE__BASE_URL"

USER_AGENT = "elt-platform-dlt-stripe/0.1"
