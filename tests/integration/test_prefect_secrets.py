"""Credentials stored as Prefect Secret blocks resolve through the same dlt lookup, and
secrets come from nowhere else than the environment, ``.dlt/secrets.toml`` and those blocks."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import dlt
import pytest
from dlt.common.configuration.container import Container
from dlt.common.configuration.specs.pluggable_run_context import PluggableRunContext
from prefect.blocks.system import Secret

from flows.config import PROJECT_DIR, environment, load_settings
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


def test_secrets_come_only_from_env_secrets_toml_or_prefect_blocks(module_dir: Path) -> None:
    # GIVEN a project whose .dlt/secrets.toml holds the Stripe key, whose .dlt/config.toml (not a
    # place for secrets) holds the tickets token, and a Prefect Secret block the GitHub token
    project = module_dir / "project"
    (project / ".dlt").mkdir(parents=True)
    (project / ".dlt" / "secrets.toml").write_text('[sources.stripe]\napi_key = "sk_test_from_toml"\n')
    (project / ".dlt" / "config.toml").write_text('[sources.example_tickets]\ntoken = "from_config_toml"\n')
    Secret(value="ghp_from_a_block").save("sources-github-access-token", overwrite=True)
    unset = ("SOURCES__STRIPE__API_KEY", "SOURCES__GITHUB__ACCESS_TOKEN", "SOURCES__EXAMPLE_TICKETS__TOKEN")
    saved = {name: os.environ.pop(name) for name in unset if name in os.environ}
    run_context = Container()[PluggableRunContext]
    try:
        with environment({"DLT_PROJECT_DIR": str(project), "ELT_PREFECT_SECRETS": "true"}):
            run_context.reload()
            load_settings()
            # THEN the secret stores are exactly these three, in this order of precedence
            providers = [provider.name for provider in dlt.secrets.config_providers]
            assert providers == ["Environment Variables", "secrets.toml", "Prefect Secret blocks"]
            assert dlt.secrets["sources.stripe.api_key"] == "sk_test_from_toml"
            assert dlt.secrets["sources.github.access_token"] == "ghp_from_a_block"
            assert dlt.secrets.get("sources.example_tickets.token") is None
            # AND the environment wins over both files and blocks
            with environment({"SOURCES__STRIPE__API_KEY": "sk_test_from_env"}):
                assert dlt.secrets["sources.stripe.api_key"] == "sk_test_from_env"
    finally:
        os.environ.update(saved)
        run_context.reload()


def test_secrets_toml_is_git_ignored_and_only_its_example_is_committed() -> None:
    if not (PROJECT_DIR / ".git").exists():
        pytest.skip("not a git checkout")

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", *args], cwd=PROJECT_DIR, capture_output=True, text=True, check=False)

    assert git("check-ignore", "-q", ".dlt/secrets.toml").returncode == 0
    assert git("check-ignore", "-q", ".dlt/example.secrets.toml").returncode == 1
    assert git("ls-files", ".dlt").stdout.split() == [".dlt/example.secrets.toml"]
