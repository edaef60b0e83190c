"""BigQuery's emulator as the tests read it: a client built from the flow's own settings."""

from __future__ import annotations

from typing import Any

from flows.config import load_settings


def client() -> Any:
    """A google-cloud-bigquery client built from the same settings the flow uses."""
    from google.cloud import bigquery

    creds = load_settings().credentials
    return bigquery.Client(
        project=creds.project_id,
        credentials=creds.google_credentials,
        location=creds.location,
        client_options={"api_endpoint": creds.api_endpoint} if creds.api_endpoint else None,
    )


def query(sql: str) -> list[tuple[Any, ...]]:
    return [tuple(row.values()) for row in client().query_and_wait(sql, api_timeout=30, wait_timeout=30)]
