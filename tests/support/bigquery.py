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


def table_texts() -> list[tuple[str, str]]:
    """Every value of every table of the project as text, per table (tests/support/privacy.py)."""
    from tests.support import privacy

    bigquery = client()
    tables = [
        (
            f"{dataset.dataset_id}.{table.table_id}",
            f"`{bigquery.project}.{dataset.dataset_id}.{table.table_id}`",
        )
        for dataset in bigquery.list_datasets()
        for table in bigquery.list_tables(dataset)
        if table.table_type == "TABLE"
    ]
    return privacy.table_texts(query, tables)
