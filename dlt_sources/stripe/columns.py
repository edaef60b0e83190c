"""Declared columns of the raw Stripe tables and the page -> Arrow conversion.

Why declared: the raw schema must not depend on what one page happens to contain. A
column exists even when every value is null, `created` stays an int and nested objects
stay JSON. Why our own type check: Arrow tables skip dlt's row-by-row normalizer, so a
field that changes type (an amount sent as a string) would either break the Arrow
conversion or slip through; the `schema_policy` decides instead, like dlt's
`schema_contract` on `data_type` does for row-by-row loads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from dlt_sources.common.arrow import records_to_arrow
from dlt_sources.common.privacy import DELETE, REDACT, TablePrivacy, pii, subject
from dlt_sources.common.rejects import Quarantine
from dlt_sources.common.schema_policy import enforce

from . import settings

ColumnHints = dict[str, dict[str, Any]]

_BASE: ColumnHints = {
    "id": {"data_type": "text", "nullable": False},
    "object": {"data_type": "text"},
    # nullable: a deletion row carries only its id (and `deleted`)
    "created": {"data_type": "bigint"},
    "livemode": {"data_type": "bool"},
    "metadata": {"data_type": "json"},
}
_DELETED: ColumnHints = {
    # Stripe's tombstone flag; dlt deletes the row on merge instead of storing it
    "deleted": {"data_type": "bool", "hard_delete": True},
}

COLUMNS: dict[str, ColumnHints] = {
    "customers": {
        **_BASE,
        "id": {"data_type": "text", "nullable": False, **subject("stripe_customer")},
        "metadata": {"data_type": "json", **subject("shop_customer", json_field="shop_customer_id")},
        "email": {"data_type": "text", **pii("email", subject="email")},
        "name": {"data_type": "text", **pii("name")},
        "description": {"data_type": "text", **pii("free_text")},
        "currency": {"data_type": "text"},
        "balance": {"data_type": "bigint"},
        "delinquent": {"data_type": "bool"},
        "address": {"data_type": "json", **pii("address")},
        "shipping": {"data_type": "json", **pii("address")},
        "invoice_settings": {"data_type": "json"},
        **_DELETED,
    },
    "charges": {
        **_BASE,
        "amount": {"data_type": "bigint"},
        "amount_captured": {"data_type": "bigint"},
        "amount_refunded": {"data_type": "bigint"},
        "currency": {"data_type": "text"},
        "customer": {"data_type": "text", **subject("stripe_customer")},
        "invoice": {"data_type": "text"},
        "payment_intent": {"data_type": "text"},
        "balance_transaction": {"data_type": "text"},
        "status": {"data_type": "text"},
        "paid": {"data_type": "bool"},
        "captured": {"data_type": "bool"},
        "refunded": {"data_type": "bool"},
        "disputed": {"data_type": "bool"},
        "description": {"data_type": "text"},
        "failure_code": {"data_type": "text"},
        "failure_message": {"data_type": "text"},
        "billing_details": {"data_type": "json", **pii("address")},
        "outcome": {"data_type": "json"},
        "payment_method_details": {"data_type": "json"},
        "refunds": {"data_type": "json"},
    },
    "refunds": {
        **_BASE,
        "amount": {"data_type": "bigint"},
        "charge": {"data_type": "text"},
        "payment_intent": {"data_type": "text"},
        "balance_transaction": {"data_type": "text"},
        "currency": {"data_type": "text"},
        "status": {"data_type": "text"},
        "reason": {"data_type": "text"},
        "failure_reason": {"data_type": "text"},
    },
    "invoices": {
        **_BASE,
        "customer": {"data_type": "text", **subject("stripe_customer")},
        "subscription": {"data_type": "text"},
        "charge": {"data_type": "text"},
        "payment_intent": {"data_type": "text"},
        "number": {"data_type": "text"},
        "status": {"data_type": "text"},
        "billing_reason": {"data_type": "text"},
        "collection_method": {"data_type": "text"},
        "currency": {"data_type": "text"},
        "amount_due": {"data_type": "bigint"},
        "amount_paid": {"data_type": "bigint"},
        "amount_remaining": {"data_type": "bigint"},
        "subtotal": {"data_type": "bigint"},
        "tax": {"data_type": "bigint"},
        "total": {"data_type": "bigint"},
        "paid": {"data_type": "bool"},
        "attempted": {"data_type": "bool"},
        "attempt_count": {"data_type": "bigint"},
        "due_date": {"data_type": "bigint"},
        "period_start": {"data_type": "bigint"},
        "period_end": {"data_type": "bigint"},
        "hosted_invoice_url": {"data_type": "text"},
        "lines": {"data_type": "json"},
        "status_transitions": {"data_type": "json"},
        "discounts": {"data_type": "json"},
        "total_tax_amounts": {"data_type": "json"},
        **_DELETED,
    },
    "events": {
        "id": {"data_type": "text", "nullable": False},
        "object": {"data_type": "text"},
        "type": {"data_type": "text"},
        "created": {"data_type": "bigint"},
        "api_version": {"data_type": "text"},
        "livemode": {"data_type": "bool"},
        "pending_webhooks": {"data_type": "bigint"},
        "object_id": {"data_type": "text"},
        "object_type": {"data_type": "text"},
        "request": {"data_type": "json"},
        "data": {"data_type": "json"},
    },
}

# Fields Stripe adds to an invoice (they become columns when they appear) that copy the customer.
_INVOICE_CUSTOMER_FIELDS = {
    "customer_email": pii("email", subject="email"),
    "customer_name": pii("name"),
    "customer_address": pii("address"),
    "customer_phone": pii("phone"),
    "customer_shipping": pii("address"),
}

PRIVACY: dict[str, TablePrivacy] = {
    "customers": TablePrivacy.from_hints(COLUMNS["customers"], policy=DELETE),
    # payments and invoices are kept for tax law: their people are redacted, their amounts stay
    "charges": TablePrivacy.from_hints(COLUMNS["charges"], policy=REDACT, mentions=("billing_details",)),
    "invoices": TablePrivacy.from_hints(COLUMNS["invoices"] | _INVOICE_CUSTOMER_FIELDS, policy=REDACT),
    # an event's payload is the object it changed: a customer, or a charge naming one
    "events": TablePrivacy(policy=DELETE, mentions=("object_id", "data")),
}
"""Where Stripe's tables hold people (``elt privacy map``); refunds name only a charge."""

_ARROW_TYPES = {"text": pa.string(), "bigint": pa.int64(), "bool": pa.bool_(), "json": pa.string()}
ARROW_SCHEMAS: dict[str, pa.Schema] = {
    table: pa.schema(
        [
            pa.field(name, _ARROW_TYPES[hint["data_type"]], hint.get("nullable", True))
            for name, hint in columns.items()
        ]
    )
    for table, columns in COLUMNS.items()
}
JSON_COLUMNS: dict[str, frozenset[str]] = {
    table: frozenset(name for name, hint in columns.items() if hint["data_type"] == "json")
    for table, columns in COLUMNS.items()
}


def prepare(table: str, records: Sequence[dict[str, Any]], policy: str) -> list[dict[str, Any]]:
    """Fold expanded objects back to ids, then apply `schema_policy` to type changes."""
    declared = {name: hint["data_type"] for name, hint in COLUMNS[table].items()}
    folded = []
    for record in records:
        row = dict(record)
        for name in settings.EXPANDABLE.intersection(row):
            value = row[name]
            if isinstance(value, dict) and "id" in value:
                row[name] = value["id"]
        folded.append(row)
    return enforce("stripe", table, folded, declared, policy)


INT_COLUMNS: dict[str, frozenset[str]] = {
    table: frozenset(name for name, hint in columns.items() if hint["data_type"] == "bigint")
    for table, columns in COLUMNS.items()
}
EPOCH_COLUMNS = ("created",)
"""Unix seconds: outside years 1-9999 no warehouse can turn them into timestamps."""


def to_arrow(
    table: str, records: Sequence[dict[str, Any]], policy: str, quarantine: Quarantine | None = None
) -> pa.Table:
    """One Arrow table with the declared types pinned; new fields become new columns.

    With a ``quarantine``, records that cannot load faithfully (no id, text that is not
    UTF-8, an integer beyond 64 bits, a `created` outside years 1-9999) are set aside.
    """
    prepared = prepare(table, records, policy)
    try:
        arrow = records_to_arrow(prepared, json_columns=JSON_COLUMNS[table], schema=ARROW_SCHEMAS[table])
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, UnicodeEncodeError):
        if quarantine is None:
            raise
        prepared = quarantine.screen_records(table, prepared, ("id",), INT_COLUMNS[table])
        arrow = records_to_arrow(prepared, json_columns=JSON_COLUMNS[table], schema=ARROW_SCHEMAS[table])
    if quarantine is None:
        return arrow
    return quarantine.screen(table, arrow, ("id",), epoch_seconds=EPOCH_COLUMNS)


def event_rows(events: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of `raw_stripe.events`: the envelope, the changed object's id/kind, data as JSON."""
    rows = []
    for event in events:
        obj = (event.get("data") or {}).get("object") or {}
        rows.append(
            {
                "id": event["id"],
                "object": event.get("object", "event"),
                "type": event.get("type"),
                "created": event.get("created"),
                "api_version": event.get("api_version"),
                "livemode": event.get("livemode"),
                "pending_webhooks": event.get("pending_webhooks"),
                "object_id": obj.get("id"),
                "object_type": obj.get("object"),
                "request": event.get("request"),
                "data": event.get("data"),
            }
        )
    return rows
