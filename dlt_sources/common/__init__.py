"""Helpers shared by the API sources (HTTP client, errors). Pure dlt/requests, no Prefect."""
