"""Credentials stored as Prefect Secret blocks resolve through the same dlt lookup."""

from __future__ import annotations

import dlt
import pytest
from prefect.blocks.system import Secret

from flows.config import load_settings
from flows.secrets import block_name

pytestmark = pytest.mark.usefixtures("prefect_harness")


def test_block_names_follow_dlt_keys() -> None:
    assert block_name("api_key", "sources", "stripe") == "sources-stripe-api-key"


def test_source_and_warehouse_credentials_come_from_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOURCES__STRIPE__API_KEY", raising=False)
    monkeypatch.setenv("ELT_PREFECT_SECRETS", "true")
    Secret(value="sk_test_from_a_block").save("sources-stripe-api-key", overwrite=True)
    Secret(value="snowflake://loader:pw-from-block@acme-xy12345/ANALYTICS?warehouse=WH").save(
        "destination-snowflake-credentials", overwrite=True
    )

    settings = load_settings("snowflake")

    assert settings.tool_environment()["ELT_SNOWFLAKE_PASSWORD"] == "pw-from-block"
    assert dlt.secrets["sources.stripe.api_key"] == "sk_test_from_a_block"


def test_blocks_are_ignored_unless_switched_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ELT_PREFECT_SECRETS", raising=False)
    monkeypatch.delenv("SOURCES__STRIPE__API_KEY", raising=False)
    Secret(value="sk_test_from_a_block").save("sources-stripe-api-key", overwrite=True)
    load_settings()
    with pytest.raises(KeyError):
        dlt.secrets["sources.stripe.api_key"]
